# No package manager in an image that is not declared debug = true: the
# image is assembled from a lock, never modified in place.
package kiln.package_manager

import data.kiln.lib
import rego.v1

managers := {
	"dpkg", "dpkg-deb", "dpkg-query", "dpkg-divert", "apt", "apt-get", "apt-cache",
	"aptitude", "apk", "rpm", "yum", "dnf", "microdnf", "zypper",
}

deny contains {"msg": sprintf("%v is a package manager in an image not declared debug = true", [path]), "path": path} if {
	input.kind == "image"
	not input.debug
	some dir in lib.bin_dirs
	some name in managers
	path := concat("/", [dir, name])
	f := input.files[path]
	lib.executable_kind(f)
}
