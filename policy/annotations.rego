# The OCI annotations a consumer needs to know what an image is and where it
# comes from. kiln fills in the title and the description; the source must
# be declared.
package kiln.annotations

import rego.v1

required := [
	"org.opencontainers.image.title",
	"org.opencontainers.image.description",
	"org.opencontainers.image.source",
]

nonempty(obj, key) if {
	v := obj[key]
	is_string(v)
	trim_space(v) != ""
}

deny contains {
	"msg": sprintf("required OCI annotation %v is missing or empty", [key]),
	"field": sprintf("annotations.%v", [key]),
} if {
	input.kind == "image"
	some key in required
	not nonempty(input.annotations, key)
}

deny contains {
	"msg": "the definition declares no org.opencontainers.image.source annotation",
	"field": "annotations.org.opencontainers.image.source",
} if {
	input.kind == "definition"
	not nonempty(input.definition.annotations, "org.opencontainers.image.source")
}
