# Helpers shared by kiln's default policies (no deny or warn rules here).
package kiln.lib

import rego.v1

# Where programs are looked up: the PATH of kiln images and the usual rest.
bin_dirs := {"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}

image if input.kind == "image"

definition if input.kind == "definition"

basename(path) := name if {
	parts := split(path, "/")
	name := parts[count(parts) - 1]
}

dirname(path) := dir if {
	parts := split(path, "/")
	dir := concat("/", array.slice(parts, 0, count(parts) - 1))
}

in_bin_dir(path) if bin_dirs[dirname(path)]

# Not a directory: what can be executed or linked to.
executable_kind(f) if f.type in {"file", "symlink", "hardlink"}
