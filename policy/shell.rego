# No shell in an image that is not declared debug = true: not as a program
# in a bin directory, not as busybox or one of its applets, not as the
# entrypoint.
package kiln.shell

import data.kiln.lib
import rego.v1

shells := {
	"sh", "bash", "dash", "ash", "ksh", "ksh93", "mksh", "pdksh", "zsh", "csh", "tcsh",
	"fish", "rbash", "busybox", "toybox",
}

shell_name(name) if shells[name]

# /usr/bin/*sh: whatever its name, a program ending in "sh" is treated as one.
shell_name(name) if endswith(name, "sh")

# Paths in bin directories that name a shell. Lookups for the known names;
# one pass over the files for the "*sh" rule, cheapest test first.
shell_paths contains path if {
	some dir in lib.bin_dirs
	some name in shells
	path := concat("/", [dir, name])
	input.files[path]
}

shell_paths contains path if {
	some path, _ in input.files
	endswith(path, "sh")
	lib.in_bin_dir(path)
}

deny contains {"msg": sprintf("%v is a shell (%v) in an image not declared debug = true", [path, f.type]), "path": path} if {
	input.kind == "image"
	not input.debug
	some path in shell_paths
	f := input.files[path]
	lib.executable_kind(f)
}

deny contains {"msg": sprintf("%v is busybox in an image not declared debug = true", [path]), "path": path} if {
	input.kind == "image"
	not input.debug
	some path, f in input.files
	endswith(path, "/busybox")
	f.type == "file"
	bits.and(f.mode, 73) != 0 # executable (0111)
	not lib.in_bin_dir(path)
}

deny contains {"msg": sprintf("%v links to busybox (an applet) in an image not declared debug = true", [path]), "path": path} if {
	input.kind == "image"
	not input.debug
	some path, f in input.files
	f.type in {"symlink", "hardlink"}
	endswith(f.target, "busybox")
	lib.basename(f.target) == "busybox"
	not shell_name(lib.basename(path))
}

deny contains {"msg": sprintf("the entrypoint runs a shell (%v) in an image not declared debug = true", [entry]), "field": "config.Entrypoint"} if {
	input.kind == "image"
	not input.debug
	entry := input.config.config.Entrypoint[0]
	shell_name(lib.basename(entry))
}

deny contains {"msg": sprintf("the entrypoint runs a shell (%v) in an image not declared debug = true", [entry]), "field": "config.entrypoint"} if {
	input.kind == "definition"
	not input.debug
	entry := input.definition.config.entrypoint[0]
	shell_name(lib.basename(entry))
}
