# The image names the user it runs as, and that user is not root, unless the
# definition declares the image a debug image (debug = true).
package kiln.user

import rego.v1

field := "config.User" if input.kind == "image"

field := "accounts.run_as" if input.kind == "definition"

user_set if {
	is_string(input.user.value)
	trim_space(input.user.value) != ""
}

deny contains {"msg": "no user is set: the image would run as root", "field": field} if {
	not user_set
	not input.debug
}

deny contains {
	"msg": sprintf("the image runs as root (user %v, uid 0) but is not declared debug = true", [input.user.value]),
	"field": field,
} if {
	user_set
	input.user.uid == 0
	not input.debug
}

warn contains {
	"msg": sprintf("user %v cannot be resolved to a numeric uid (not in /etc/passwd)", [input.user.value]),
	"field": field,
} if {
	user_set
	input.user.uid == null
}
