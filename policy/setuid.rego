# No setuid or setgid programs, debug images included: nothing in a base
# image needs to gain privileges.
package kiln.setuid

import rego.v1

deny contains {"msg": sprintf("%v is %v (mode %v)", [path, what, f.octal]), "path": path} if {
	input.kind == "image"
	some path, f in input.files
	bits.and(f.mode, 3072) != 0 # 06000
	f.type in {"file", "hardlink"}
	what := kind(f.mode)
}

kind(mode) := "setuid and setgid" if bits.and(mode, 3072) == 3072

kind(mode) := "setuid" if bits.and(mode, 3072) == 2048

kind(mode) := "setgid" if bits.and(mode, 3072) == 1024
