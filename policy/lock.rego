# Every package is pinned by sha256 in kiln.lock, and the image holds
# exactly the packages the lock pinned for it, in the pinned versions.
package kiln.lock

import rego.v1

locked := {p.name: p | some p in input.lock.packages}

sha256(s) if {
	is_string(s)
	count(s) == 64
	trim(s, "0123456789abcdef") == ""
}

deny contains {"msg": sprintf("kiln.lock has no entry for image %v; run `kiln lock`", [input.image]), "field": "kiln.lock"} if {
	not input.lock.locked
}

deny contains {"msg": sprintf("package %v (%v) is not pinned by a sha256 in kiln.lock", [p.name, p.arch]), "field": sprintf("kiln.lock packages.%v.%v.sha256", [p.arch, p.name])} if {
	some p in input.lock.packages
	not sha256(p.sha256)
}

deny contains {"msg": sprintf("package %v %v is installed but not pinned in kiln.lock for this image", [name, p.version]), "path": p.file} if {
	input.kind == "image"
	input.lock.locked
	some name, p in input.packages
	not locked[name]
}

deny contains {"msg": sprintf("package %v is installed as version %v but kiln.lock pins %v", [name, p.version, locked[name].version]), "path": p.file} if {
	input.kind == "image"
	some name, p in input.packages
	locked[name].version != p.version
}

deny contains {"msg": sprintf("package %v is pinned in kiln.lock for this image but not installed", [name]), "field": sprintf("kiln.lock images.%v", [input.image])} if {
	input.kind == "image"
	some name, _ in locked
	not input.packages[name]
}
