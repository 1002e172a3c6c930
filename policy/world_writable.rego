# Nothing writable by every user, except directories with the sticky bit
# (/tmp), where users cannot remove each other's files.
package kiln.world_writable

import rego.v1

sticky_dir(f) if {
	f.type == "directory"
	bits.and(f.mode, 512) != 0 # 01000
}

deny contains {"msg": sprintf("%v (%v, mode %v) is writable by every user", [path, f.type, f.octal]), "path": path} if {
	input.kind == "image"
	some path, f in input.files
	bits.and(f.mode, 2) != 0 # 0002
	f.type != "symlink" # a symlink's own mode means nothing
	not sticky_dir(f)
}
