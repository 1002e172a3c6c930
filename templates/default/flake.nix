{
  description = "Container images built with kiln";

  # kiln builds the images: its seed, its Nix library and (unless this
  # project has its own policy/) its policies. `kiln init --kiln REF`
  # writes another reference here, e.g. a `path:` to a local checkout.
  inputs.kiln.url = "github:kiln-build/kiln";

  # packages.<system>.<image>[-<variant>][-<arch>], checks (the policies)
  # and apps.verify: kiln's lib.project makes them from images/ and kiln.lock.
  outputs = { self, kiln }: kiln.lib.project { root = ./.; };
}
