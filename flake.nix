{
  description = "kiln: minimal, hardened container base images from pinned Debian packages, built hermetically and reproducibly, with SBOMs, SLSA provenance and signatures";

  # No inputs: there is no nixpkgs here. Every derivation is raw and built by
  # kiln's own pinned, statically linked seed (nix/seed.json).
  inputs = { };

  outputs = { self }:
    let
      kiln = import ./nix/lib.nix { root = ./.; };
      inherit (kiln) system;

      # `nix run .#verify`: the pinned seed's verifier, as bin/verify.
      verify = kiln.step {
        name = "kiln-verify";
        stepName = "link";
        input = { links = { "bin/verify" = "${kiln.seed}"; }; };
      };
    in
    {
      packages.${system} = kiln.packages // {
        default = kiln.packages.scratch-plus;
        seed = kiln.seed;
        # The seed compiled here, in the sandbox, by Debian's rustc.
        seed-from-source = kiln.seedFromSource;
        toolchain-rust = kiln.rustRoot;
        # The kiln command, compiled the same way: `nix run .#kiln -- ...`.
        kiln = kiln.driverFromSource;
        inherit verify;
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
      };

      # `nix flake check`: the policies of policy/ on every image.
      checks.${system} = kiln.policyChecks;

      apps.${system} = {
        verify = { type = "app"; program = "${verify}/bin/verify"; };
        kiln = { type = "app"; program = "${kiln.driverFromSource}/bin/kiln"; };
        default = self.apps.${system}.verify;
      };
    };
}
