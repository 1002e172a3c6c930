{
  description = "kiln: minimal, hardened container base images from pinned Debian packages, built hermetically and reproducibly, with SBOMs, SLSA provenance and signatures";

  # No inputs: there is no nixpkgs here. Every derivation is raw and built by
  # kiln's own statically linked seed, itself compiled in the sandbox from
  # pinned .debs and crates, starting from a pinned busybox (nix/lib.nix).
  inputs = { };

  outputs = { self }:
    let
      # The flake outputs of a kiln project (a directory with images/ and
      # kiln.lock), built with this kiln: its images as packages, their
      # policies as checks, and the verifier as the default app. A
      # project's flake.nix is `outputs = { self, kiln }: kiln.lib.project { root = ./.; };`.
      project = { root }: (import ./nix/lib.nix { inherit root; kilnRoot = ./.; }).flakeOutputs;

      # The catalogue is a kiln project like any other: one evaluation of
      # lib.nix serves its outputs and the packages only kiln has.
      kiln = import ./nix/lib.nix { root = ./.; };
      inherit (kiln) system;
      catalogue = kiln.flakeOutputs;

      # The kiln command, compiled like the seed: `nix run .#kiln -- ...`
      # (where the driver's sources are: kiln's own repository).
      driver = if kiln.driverFromSource == null then { } else { kiln = kiln.driverFromSource; };
    in
    {
      lib = { inherit project; };

      # `nix flake init -t <kiln>`: a new project (what `kiln init` writes).
      templates.default = {
        path = ./templates/default;
        description = "a kiln project: one example image, built with kiln as a flake input";
      };

      packages.${system} = catalogue.packages.${system} // {
        default = kiln.packages.scratch-plus;
        # The seed, compiled here in the sandbox by Debian's rustc.
        seed = kiln.seed;
        toolchain-rust = kiln.rustRoot;
        inherit (kiln) verify;
        # The smallest toolchain root: busybox-static, with /bin/sh.
        root-busybox = kiln.toolchainRoot {
          name = "busybox";
          arch = "amd64";
          names = [ "busybox-static" ];
          links = { "/bin/sh" = "busybox"; };
        };
        # A shell run in it: what the sandbox's build sees from inside.
        root-busybox-check = kiln.inRoot {
          name = "kiln-root-busybox-check";
          root = self.packages.${system}.root-busybox;
          argv = [ "/bin/sh" "-c" "id -u > $out/uid; ls / > $out/ls; /bin/busybox echo hello > $out/hello" ];
          env = { PATH = "/bin"; };
        };
      } // driver;

      # `nix flake check`: the policies of policy/ on every image.
      checks = catalogue.checks;

      apps.${system} = catalogue.apps.${system} // (if driver == { } then { } else {
        kiln = { type = "app"; program = "${driver.kiln}/bin/kiln"; };
      });
    };
}
