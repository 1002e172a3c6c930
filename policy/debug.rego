# A debug image is allowed what no other image is (root, a shell); say so
# every time it is checked, so that it is never shipped by accident.
package kiln.debug

import rego.v1

warn contains {"msg": "debug image: it may run as root and contain a shell; do not deploy it", "field": "debug"} if {
	input.kind == "image"
	input.debug
}
