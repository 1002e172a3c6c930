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

deny contains {"msg": sprintf("%v is a shell (%v) in an image not declared debug = true", [path, f.type]), "path": path} if {
	input.kind == "image"
	not input.debug
	some path, f in input.files
	lib.executable_kind(f)
	lib.in_bin_dir(path)
	shell_name(lib.basename(path))
}

deny contains {"msg": sprintf("%v is busybox in an image not declared debug = true", [path]), "path": path} if {
	input.kind == "image"
	not input.debug
	some path, f in input.files
	f.type == "file"
	bits.and(f.mode, 73) != 0 # executable (0111)
	lib.basename(path) == "busybox"
	not lib.in_bin_dir(path)
}

deny contains {"msg": sprintf("%v links to busybox (an applet) in an image not declared debug = true", [path]), "path": path} if {
	input.kind == "image"
	not input.debug
	some path, f in input.files
	f.type in {"symlink", "hardlink"}
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
