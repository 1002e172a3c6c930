# Where TLS is expected (SSL_CERT_FILE is set, or ca-certificates is
# installed), the CA bundle is there: a non-empty regular file.
package kiln.ca_bundle

import rego.v1

default_bundle := "/etc/ssl/certs/ca-certificates.crt"

tls_expected if input.env.SSL_CERT_FILE

tls_expected if input.packages["ca-certificates"]

bundle := object.get(input.env, "SSL_CERT_FILE", default_bundle)

# The file itself, or what a symlink to it points at (one level).
resolved(path) := f if {
	f := input.files[path]
	f.type != "symlink"
}

resolved(path) := input.files[target] if {
	input.files[path].type == "symlink"
	t := input.files[path].target
	startswith(t, "/")
	target := t
}

resolved(path) := input.files[target] if {
	input.files[path].type == "symlink"
	t := input.files[path].target
	not startswith(t, "/")
	parts := split(path, "/")
	target := concat("/", array.concat(array.slice(parts, 0, count(parts) - 1), [t]))
}

usable(f) if {
	f.type == "file"
	f.size > 0
}

deny contains {"msg": sprintf("TLS is expected but the CA bundle %v is missing", [bundle]), "path": bundle} if {
	input.kind == "image"
	tls_expected
	not input.files[bundle]
}

deny contains {"msg": sprintf("TLS is expected but the CA bundle %v is not a non-empty file", [bundle]), "path": bundle} if {
	input.kind == "image"
	tls_expected
	input.files[bundle]
	not usable(resolved(bundle))
}

deny contains {"msg": sprintf("SSL_CERT_FILE is %v but ca-certificates is not among the packages", [bundle]), "field": "config.env.SSL_CERT_FILE"} if {
	input.kind == "definition"
	input.env.SSL_CERT_FILE
	not "ca-certificates" in {p | some p in input.definition.packages.include}
}
