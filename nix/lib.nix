# Derivation builders for kiln images.
#
# There is no nixpkgs here: every derivation is a raw `derivation { ... }`
# whose builder is the pinned kiln seed (a static binary) or one of Nix's
# builtins. Evaluation is pure: it reads the definitions, kiln.lock and the
# seed pin from this repository and nothing from the host.
#
# The JSON each seed step receives is documented in docs/internals.md.
#
# `root` is the project: images/, kiln.lock, and optionally policy/ and
# toolchains/. `kilnRoot` is kiln's own source (the flake's input in a
# project of its own; the same directory for kiln's catalogue). The seed
# always comes from kiln's source and kiln's lock, so every project builds
# with the very derivation kiln pins in nix/seed.json; without a policy/ of
# its own, a project is judged by kiln's policies. Toolchains for
# application images are the project's own (toolchains/, locked in its
# kiln.lock).
{ root, kilnRoot ? root }:
let
  inherit (builtins)
    attrNames concatMap filter fromJSON fromTOML hasAttr head length listToAttrs
    map pathExists readDir readFile replaceStrings sort toJSON getEnv
    stringLength substring mapAttrs;

  system = "x86_64-linux";

  lockFile = root + "/kiln.lock";
  lock =
    if pathExists lockFile then fromJSON (readFile lockFile)
    else throw "kiln: kiln.lock is missing; run `kiln lock` (or scripts/setup)";

  # Set only by `kiln build --allow-unsandboxed` (an impure evaluation); the
  # seed refuses to run outside the Nix sandbox unless this is set, and then
  # says so in the build log.
  allowUnsandboxed = getEnv "KILN_ALLOW_UNSANDBOXED" == "1";

  # `kiln repro` only (an impure evaluation; a plain `nix build` never sees
  # it): extra attributes for every seed step, from the JSON object in
  # KILN_PERTURB. They change what the builder sees, never what it may
  # build: TZ, LANG, LC_ALL and SOURCE_DATE_EPOCH reach its environment,
  # kilnUmask is the umask it runs with, kilnReverseOrder makes it read its
  # inputs and create its outputs in reverse order wherever order must not
  # matter, and kilnPerturbation is a label that makes every derivation new
  # (so everything is really rebuilt). kilnTestNondeterminism makes the
  # image step deliberately non-deterministic, to test `kiln repro` itself.
  # docs/internals.md lists them.
  inherit (builtins) concatStringsSep elem isAttrs isString;
  perturbKeys = [ "TZ" "LANG" "LC_ALL" "SOURCE_DATE_EPOCH" "kilnUmask" "kilnReverseOrder" "kilnPerturbation" "kilnTestNondeterminism" ];
  perturb =
    let
      text = getEnv "KILN_PERTURB";
      value = if text == "" then { } else fromJSON text;
      unknown = filter (n: !(elem n perturbKeys)) (attrNames value);
      notStrings = filter (n: !(isString value.${n})) (attrNames value);
    in
    if !(isAttrs value) then throw "kiln: KILN_PERTURB must be a JSON object, not ${text}"
    else if unknown != [ ] then throw "kiln: KILN_PERTURB: unknown attribute(s) ${concatStringsSep ", " unknown} (known: ${concatStringsSep ", " perturbKeys})"
    else if notStrings != [ ] then throw "kiln: KILN_PERTURB: values must be strings: ${concatStringsSep ", " notStrings}"
    else value;

  # The seed, kiln's own static builder, is compiled in the sandbox from
  # pinned inputs (seedFromSource below). Only `kiln digests --seed host`
  # (an impure evaluation) swaps in a seed built by the host's cargo, added
  # to the store under its NAR hash: the diverse double-compilation check.
  hostSeedHash = getEnv "KILN_HOST_SEED";
  hostSeed = pinnedPath {
    name = "kiln-seed";
    mode = "recursive";
    hash = hostSeedHash;
    hint = "kiln-host-seed-is-not-in-the-nix-store/run-kiln-digests-seed-host";
    extra = { executable = true; unpack = false; };
  };
  isKiln = root == kilnRoot;
  kiln = import ./lib.nix { root = kilnRoot; };
  seed =
    if hostSeedHash != "" then hostSeed
    else if isKiln then seedFromSource
    else kiln.seed;

  # A path put into the store by kiln (`kiln fetch`, scripts/bootstrap),
  # declared as a fixed-output derivation with its pinned hash: the store
  # path only exists if the bytes are exactly those. The URL is never
  # fetched; when the path is missing, Nix prints it, so it says what to run.
  pinnedPath = { name, mode, hash, hint, extra ? { } }: derivation ({
    inherit name system;
    builder = "builtin:fetchurl";
    url = "file:///${hint}";
    outputHashMode = mode;
    outputHashAlgo = "sha256";
    outputHash = hash;
    preferLocalBuild = true;
  } // extra);

  # Store names may not contain `~` or the epoch's `:` (docs/internals.md).
  sanitize = replaceStrings [ "~" ":" ] [ "-" "-" ];

  # A pinned .deb: a flat fixed-output derivation whose hash is the SHA256
  # from Debian's signed index. `kiln fetch` adds the file under the same
  # name, so the build never needs the network.
  deb = p:
    let name = sanitize "${p.name}_${p.version}_${p.architecture}.deb";
    in pinnedPath { inherit name; mode = "flat"; hash = p.sha256; hint = "deb-is-not-in-the-nix-store/run-kiln-fetch/${name}"; };

  # The lock's package tables by release codename. Format 1 had one table
  # and no `release` keys: it reads as one release, whatever its name.
  packageTables =
    if (lock.version or 1) == 1 then { bookworm = lock.packages or { }; } else lock.packages or { };
  # The release of a lock entry (an image, a toolchain, the bootstrap).
  releaseOf = entry: entry.release or "bookworm";

  lockedPackage = release: arch: name:
    let
      byArch = (packageTables.${release} or { }).${arch} or (throw "kiln: kiln.lock has no ${release} packages for ${arch}; run `kiln lock`");
      p = byArch.${name} or (throw "kiln: kiln.lock has no ${release} ${arch} package ${name}; run `kiln lock`");
    in p // { inherit name; };

  # Each locked .deb's derivation, made once however many layers and roots
  # use it: Nix does not memoize function calls, but an attribute of a lazy
  # set is evaluated once. A name the lock lacks gets lockedPackage's error.
  debs = mapAttrs (release: mapAttrs (arch: byName: mapAttrs (name: p: deb (p // { inherit name; })) byName)) packageTables;
  lockedDeb = release: arch: name: debs.${release}.${arch}.${name} or (deb (lockedPackage release arch name));

  # A seed step: `kiln-seed <step>` with its JSON input passed as a file.
  step = { name, stepName, input }: derivation ({
    inherit name system;
    builder = seed;
    args = [ stepName ];
    kilnInput = toJSON input;
    passAsFile = [ "kilnInput" ];
  } // perturb // (if allowUnsandboxed then { kilnAllowUnsandboxed = "1"; } else { }));

  # One layer: a group of packages from the lock's layer plan. A group of
  # one is the shared per-package layer.
  layer = { release, arch, def, names }:
    let
      packages = map (n: lockedPackage release arch n // { deb = lockedDeb release arch n; }) names;
      label =
        if length names == 1 then head names
        else "${head names}-and-${toString (length names - 1)}-more";
    in step {
      name = sanitize "kiln-layer-${arch}-${label}";
      stepName = "layer";
      input = {
        inherit arch packages;
        excludePaths = (def.packages or { }).exclude_paths or [ ];
        defaultExcludes = (def.packages or { }).default_excludes or true;
      } // layerCompression def;
    };

  # Only a non-default compression reaches the layer step's input, so that
  # gzip layers keep the derivations they have always had.
  layerCompression = def:
    let c = def.compression or "gzip"; in if c == "gzip" then { } else { compression = c; };

  # A toolchain root: pinned .debs unpacked into one FHS tree by the seed's
  # `root` step (docs/internals.md), with the links the alternatives system
  # would have made. Built once per (toolchain, arch) and shared by every
  # build that runs the toolchain.
  # `foreign`: packages of other archs (arch -> names), unpacked as they
  # are (a cross compiler's target libraries).
  toolchainRoot = { name, arch, names, links ? { }, foreign ? { } }: step {
    name = sanitize "kiln-root-${name}-${arch}";
    stepName = "root";
    input = {
      packages =
        let
          release = releaseOf (lockedToolchain name);
          rootPackage = a: n: let p = lockedPackage release a n; in { name = "${n} ${p.version} (${p.architecture})"; deb = lockedDeb release a n; };
        in map (rootPackage arch) names
          ++ concatMap (a: map (rootPackage a) foreign.${a}) (attrNames foreign);
      inherit links;
    };
  };

  # One program run inside a toolchain root by the seed's `chroot` step
  # (user and mount namespaces, chroot; the environment is exactly `env`).
  inRoot = { name, root, argv, env ? { }, cwd ? null, crates ? [ ], src ? null, goVendor ? false }: step {
    inherit name;
    stepName = "chroot";
    input = { inherit root argv env; }
      // (if goVendor then { inherit goVendor; } else { })
      // (if cwd == null then { } else { inherit cwd; })
      // (if crates == [ ] then { } else { inherit crates; })
      // (if src == null then { } else { inherit src; });
  };

  # ---- Compiling in the sandbox -------------------------------------------
  #
  # The bootstrap: busybox unpacked from its pinned .deb (kiln.lock's
  # `bootstrap`; `kiln fetch` adds it). It is the only program that runs
  # here before a seed compiled here exists: it unpacks the first toolchain
  # root and enters it (docs/internals.md, "Bootstrap").
  busybox =
    let b = lock.bootstrap or (throw "kiln: kiln.lock has no bootstrap; run `kiln lock`");
    in pinnedPath { name = "kiln-busybox"; mode = "recursive"; hash = b.narHash; hint = "kiln-busybox-is-not-in-the-nix-store/run-kiln-fetch"; };

  # A derivation whose builder is busybox's shell running `script`, with
  # every applet on PATH (as links in /build/bin) and nothing else.
  busyboxStep = { name, script, env ? { } }: derivation ({
    inherit name system;
    builder = "${busybox}/bin/busybox";
    args = [ "sh" "-ec" ''
      /nix/store/${baseNameOf busybox}/bin/busybox mkdir -p /build/bin
      /nix/store/${baseNameOf busybox}/bin/busybox --install -s /build/bin
      export PATH=/build/bin
      . "$scriptPath"
    '' ];
    inherit script;
    passAsFile = [ "script" ];
  } // env);

  lockedToolchain = name:
    lock.toolchains.${name} or (throw "kiln: kiln.lock has no toolchain ${name}; run `kiln lock`");

  toolchainDef = name:
    let file = root + "/toolchains/${name}/toolchain.toml";
    in if pathExists file then fromTOML (readFile file)
    else throw "kiln: toolchains/${name}/toolchain.toml is missing";

  # A toolchain root unpacked by busybox: each .deb's data tar extracted in
  # lock order, then the declared links. Used for the toolchain that
  # compiles the seed, before any seed exists; every later root is made by
  # the seed's `root` step, which also checks Multi-Arch overlaps.
  bootstrapRoot = { name, arch }:
    let
      names = (lockedToolchain name).archs.${arch} or (throw "kiln: kiln.lock has no ${arch} packages for toolchain ${name}");
      debs = map (n: deb (lockedPackage (releaseOf (lockedToolchain name)) arch n)) names;
      links = (toolchainDef name).links or { };
    in busyboxStep {
      name = "kiln-toolchain-${name}-${arch}";
      env = {
        debs = concatStringsSep " " (map toString debs);
        links = concatStringsSep "\n" (map (l: "${l} ${links.${l}}") (attrNames links));
      };
      script = ''
        mkdir "$out"
        for d in $debs; do
          m=$(ar t "$d" | grep '^data\.tar')
          case "$m" in
            data.tar.xz) ar p "$d" "$m" | unxz | tar -x -C "$out" ;;
            data.tar.gz) ar p "$d" "$m" | gunzip | tar -x -C "$out" ;;
            data.tar) ar p "$d" "$m" | tar -x -C "$out" ;;
            *) echo "kiln: $d: unsupported data member '$m'" >&2; exit 1 ;;
          esac
        done
        echo "$links" | while read -r l t; do
          if [ -n "$l" ]; then mkdir -p "$out$(dirname "$l")"; ln -s "$t" "$out$l"; fi
        done
      '';
    };

  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  removePrefix = prefix: s:
    if hasPrefix prefix s then substring (stringLength prefix) (stringLength s - stringLength prefix) s else s;
  splitString = sep: s: filter isString (builtins.split sep s);

  # One .crate from a Cargo.lock: a flat fixed-output derivation whose hash
  # is the lock's `checksum`. `kiln fetch` adds the file under this name.
  crate = p:
    let name = "${p.name}-${p.version}.crate";
    in pinnedPath { inherit name; mode = "flat"; hash = p.checksum; hint = "crate-is-not-in-the-nix-store/run-kiln-fetch/${name}"; };

  # Every registry crate of a Cargo.lock. Path dependencies (the workspace's
  # own crates) have no source; anything else (git) cannot be pinned by a
  # checksum and is refused.
  cratesOf = lockFile:
    let
      packages = (fromTOML (readFile lockFile)).package or [ ];
      remote = filter (p: p ? source) packages;
      bad = filter (p: !(hasPrefix "registry+" p.source) || !(p ? checksum)) remote;
    in
    if bad != [ ] then throw "kiln: ${toString lockFile}: ${(head bad).name} ${(head bad).version} comes from ${(head bad).source} without a checksum; only registry crates can be pinned"
    else map (p: { inherit (p) name version checksum; file = crate p; }) remote;

  # The Rust sources of a crate directory as a store path, without build
  # output: editing anything else in the repository does not rebuild.
  rustSources = { name, dir }: builtins.path {
    inherit name;
    path = dir;
    filter = p: t:
      let b = baseNameOf p; in
      b != "target" && b != "result" && substring 0 1 b != "." ;
  };

  # `cargo build --release --offline --locked` of `src` inside the rust
  # toolchain root, entered by busybox (user and mount namespaces, chroot).
  # The crates of `lockFile` are unpacked into a vendor directory first.
  # Paths that could leak into the binary are remapped as `kiln seed` does.
  cargoBuild = { name, src, lockFile, root, cargoArgs, artefact, install, remapAs }:
    let crates = cratesOf lockFile;
    in busyboxStep {
      inherit name;
      env = {
        inherit src root;
        crates = concatStringsSep "\n" (map (c: "${c.name}-${c.version} ${c.checksum} ${c.file}") crates);
        cargoArgs = concatStringsSep " " cargoArgs;
        inherit artefact install remapAs;
      };
      script = ''
        mkdir -p /build/vendor /build/home /build/target /build/tmp
        echo "$crates" | while read -r nv sum file; do
          [ -n "$nv" ] || continue
          tar -xzf "$file" -C /build/vendor
          [ -f "/build/vendor/$nv/Cargo.toml" ] || { echo "kiln: $file does not unpack to $nv/" >&2; exit 1; }
          printf '{"files":{},"package":"%s"}' "$sum" > "/build/vendor/$nv/.cargo-checksum.json"
        done
        cp -r "$src" /build/src
        chmod -R u+w /build/src
        r=/build/.root
        mkdir -p $r
        # The inner shell runs as root of a new user namespace (mapped to the
        # build user), so it may mount; the toolchain then runs chrooted.
        unshare -Urm sh -ec '
          mount -t tmpfs -o mode=755 none '$r'
          for d in '$root'/*; do
            n=''${d##*/}
            if [ -L "$d" ]; then cp -P "$d" '$r'/$n; else mkdir '$r'/$n; mount --rbind "$d" '$r'/$n; fi
          done
          for d in proc dev nix build tmp; do mkdir -p '$r'/$d; mount --rbind /$d '$r'/$d; done
          exec chroot '$r' /build/bin/env -i \
            PATH=/usr/bin:/bin HOME=/build/home CARGO_HOME=/build/home/cargo \
            CARGO_TARGET_DIR=/build/target CARGO_INCREMENTAL=0 \
            CARGO_ENCODED_RUSTFLAGS="-Ctarget-feature=+crt-static$(printf "\037")--remap-path-prefix=/build/src='$remapAs'$(printf "\037")--remap-path-prefix=/build/vendor=/cargo$(printf "\037")--remap-path-prefix=/build/target=/target" \
            CFLAGS="-ffile-prefix-map=/build/vendor=/cargo -ffile-prefix-map=/build/src='$remapAs'" \
            TMPDIR=/build/tmp \
            /usr/bin/cargo build --release --offline --locked --quiet \
              --manifest-path /build/src/Cargo.toml \
              --config "source.crates-io.replace-with=\"vendored\"" \
              --config "source.vendored.directory=\"/build/vendor\"" \
              '"$cargoArgs"'
        '
        eval "$install"
      '';
    };

  rustRoot = bootstrapRoot { name = "rust"; arch = "amd64"; };

  # The seed compiled from nix/seed in the sandbox by Debian's rustc, with
  # the release settings of nix/seed/build.toml: a static executable.
  seedFromSource = cargoBuild {
    name = "kiln-seed";
    src = rustSources { name = "kiln-seed-src"; dir = root + "/nix/seed"; };
    lockFile = root + "/nix/seed/Cargo.lock";
    root = rustRoot;
    cargoArgs = [ "--target" "x86_64-unknown-linux-gnu" "--bin" "kiln-seed" "--config" "/build/src/build.toml" ];
    artefact = "x86_64-unknown-linux-gnu/release/kiln-seed";
    install = ''cp /build/target/$artefact "$out"; chmod 555 "$out"'';
    remapAs = "/kiln-seed";
  };

  # The kiln driver (the `kiln` command) compiled the same way, static, as
  # bin/kiln: what `nix run .#kiln` runs and what scripts/setup installs on
  # a machine without cargo. Its sources are the files cargo reads, so an
  # image definition or a doc edit does not rebuild it.
  driverSources = builtins.path {
    name = "kiln-src";
    path = root;
    filter = p: t:
      let
        rel = removePrefix (toString root + "/") (toString p);
        top = head (splitString "/" rel);
      in
      (elem rel [ "Cargo.toml" "Cargo.lock" "src" "policy" "templates" "nix" "nix/seed" ])
      || (elem top [ "src" "policy" "templates" ] && t != "symlink")
      || (hasPrefix "nix/seed/" rel && !(hasPrefix "nix/seed/target" rel));
  };
  # Only kiln's own repository holds the driver's sources (a project that
  # only defines images does not).
  driverFromSource = if !isKiln || !(pathExists (root + "/Cargo.lock") && pathExists (root + "/src/main.rs")) then null else cargoBuild {
    name = "kiln";
    src = driverSources;
    lockFile = root + "/Cargo.lock";
    root = rustRoot;
    cargoArgs = [ "--target" "x86_64-unknown-linux-gnu" "--bin" "kiln" ];
    artefact = "x86_64-unknown-linux-gnu/release/kiln";
    install = ''mkdir -p "$out/bin"; cp /build/target/$artefact "$out/bin/kiln"; chmod 555 "$out/bin/kiln"'';
    remapAs = "/kiln";
  };

  fullName = def: variant: if variant == null then def.name else "${def.name}-${variant}";

  lockedImage = def: variant:
    let full = fullName def variant;
    in lock.images.${full} or (throw "kiln: kiln.lock has no entry for image ${full}; run `kiln lock`");

  archsOf = def: sort (a: b: a < b) (def.archs or [ "amd64" "arm64" ]);

  # One image for one architecture: a single-platform OCI layout + SBOMs.
  # An application image (`base` and `build`) is its base's image input
  # plus what the application adds.
  image = { def, variant, arch }: if def ? base then appImage { inherit def arch; } else baseImage { inherit def variant arch; };

  baseImageInput = { def, variant, arch }:
    let
      locked = lockedImage def variant;
      plan = locked.archs.${arch} or (throw "kiln: kiln.lock has no ${arch} plan for ${fullName def variant}; run `kiln lock`");
    in {
      definition = def;
      inherit variant arch;
      inherit (locked) created inputs;
      layers = map (names: sharedLayer { inherit arch def names; release = releaseOf locked; }) plan.layers;
    };

  # Every layer derivation of the project, made once: the images of a
  # project share most of their layers (the same packages with the same
  # excludes), and evaluating each again per image cost most of an
  # evaluation of many images. Keyed by what the layer step's input
  # depends on.
  layerKey = { release, arch, def, names }: toJSON [
    release
    arch
    names
    ((def.packages or { }).exclude_paths or [ ])
    ((def.packages or { }).default_excludes or true)
    (layerCompression def)
  ];
  projectLayers = listToAttrs (concatMap
    (def: concatMap
      (variant:
        let locked = lock.images.${fullName def variant} or { archs = { }; };
        in if def ? base then [ ] else concatMap
          (arch: map
            (names: let args = { inherit arch def names; release = releaseOf locked; }; in { name = layerKey args; value = layer args; })
            (locked.archs.${arch}.layers or [ ]))
          (attrNames locked.archs))
      (variantsOf def))
    definitions);
  sharedLayer = args: projectLayers.${layerKey args} or (layer args);

  baseImage = { def, variant, arch }: step {
    name = "kiln-image-${fullName def variant}-${arch}";
    stepName = "image";
    input = baseImageInput { inherit def variant arch; };
  };

  # The multi-arch image: an OCI layout whose index lists every platform.
  index = { def, variant }: step {
    name = "kiln-${fullName def variant}";
    stepName = "index";
    input = {
      inherit (def) name;
      inherit variant;
      images = map (arch: image { inherit def variant arch; }) (archsOf def);
    } // (if def ? base then { base = let b = baseOf def; in index { inherit (b) def variant; }; } else { });
  };

  # ---- Application images ------------------------------------------------
  #
  # An application names its base (`name` or `name-variant`, another image
  # of the project) and a [build]: the build runs in its toolchain's root
  # with no network, per architecture, and the image step puts its output
  # on top of the base's layers.
  byFullName = listToAttrs (concatMap
    (def: map (variant: { name = fullName def variant; value = { inherit def variant; }; }) (variantsOf def))
    definitions);
  baseOf = def:
    let b = byFullName.${def.base} or (throw "kiln: images/${def.name}/image.toml: base ${def.base} is not an image of this project");
    in if b.def ? base then throw "kiln: images/${def.name}/image.toml: base ${def.base} is itself an application; build on a base image"
    else b;

  # One toolchain root per toolchain and build-machine arch, made by the
  # seed's `root` step and shared by every application that uses it.
  rootOf = name: toolchainRoot {
    inherit name;
    arch = "amd64";
    names = (lockedToolchain name).archs.amd64 or (throw "kiln: kiln.lock has no amd64 packages for toolchain ${name}; run `kiln lock`");
    foreign = (lockedToolchain name).foreign or { };
    links = (toolchainDef name).links or { };
  };

  # The application's source directory as a store path: only that
  # directory, without VCS data or build results, so editing anything else
  # does not rebuild it.
  appSources = def:
    let dir = root + "/${def.build.source}";
    in if !(pathExists dir) then throw "kiln: images/${def.name}/image.toml: build.source ${def.build.source} does not exist"
    else builtins.path {
      name = "${def.name}-src";
      path = dir;
      filter = p: t: let b = baseNameOf p; in b != "result" && substring 0 1 b != ".";
    };

  goArch = { amd64 = "amd64"; arm64 = "arm64"; };

  # `go build` for one target arch: static, no VCS stamping, trimmed paths,
  # vendored modules (Go picks vendor/ up by itself), no proxy, no
  # toolchain download; the cache lives in the build directory.
  goBuild = { def, arch }:
    let go = def.build.go; in
    inRoot {
      name = "kiln-build-${def.name}-${arch}";
      root = rootOf def.build.toolchain;
      argv = [ "/usr/bin/go" "build" "-trimpath" "-buildvcs=false" ]
        ++ (if (go.ldflags or [ ]) != [ ] then [ "-ldflags=${concatStringsSep " " go.ldflags}" ] else [ ])
        ++ (if (go.tags or [ ]) != [ ] then [ "-tags=${concatStringsSep "," go.tags}" ] else [ ])
        ++ [ "-o" "${builtins.placeholder "out"}/bin/${def.name}" (go.main or ".") ];
      env = {
        GOOS = "linux";
        GOARCH = goArch.${arch};
        CGO_ENABLED = "0";
        GOTOOLCHAIN = "local";
        GOPROXY = "off";
        GOSUMDB = "off";
        GOENV = "off";
        GOFLAGS = "";
        GOCACHE = "/build/gocache";
        GOPATH = "/build/gopath";
        HOME = "/build/home";
        TMPDIR = "/build";
        PATH = "/usr/bin:/bin";
      };
      cwd = appSources def;
      goVendor = true;
    };

  # `cargo install` of one binary, static, for one target arch, with the
  # crates of the source's Cargo.lock vendored by the seed before cargo
  # runs (each checked against the lock's checksum). Paths that could leak
  # into the binary are remapped. arm64 is cross-compiled with GCC's
  # aarch64 cross toolchain and Rust's arm64 standard library, which the
  # toolchain must carry (toolchains/rust-cross: `foreign.arm64`).
  rustTargets = {
    amd64 = { triple = "x86_64-unknown-linux-gnu"; env = { }; };
    arm64 = {
      triple = "aarch64-unknown-linux-gnu";
      env = {
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER = "aarch64-linux-gnu-gcc";
        CC_aarch64_unknown_linux_gnu = "aarch64-linux-gnu-gcc";
        AR_aarch64_unknown_linux_gnu = "aarch64-linux-gnu-ar";
      };
    };
  };
  # The crates of a Rust application's Cargo.lock: vendored into its build
  # and listed in its SBOMs.
  appCrates = def: cratesOf (root + "/${def.build.source}/Cargo.lock");
  rustBuild = { def, arch }:
    let
      rust = def.build.rust;
      src = appSources def;
      lockFile = root + "/${def.build.source}/Cargo.lock";
      crossReady = arch == "amd64" || elem "libstd-rust-web-dev" (((lockedToolchain def.build.toolchain).foreign or { }).${arch} or [ ]);
      target =
        if !crossReady then throw "kiln: images/${def.name}/image.toml: toolchain ${def.build.toolchain} cannot cross-compile Rust to ${arch}: it needs Rust's ${arch} standard library (foreign.${arch} = [\"libstd-rust-web-dev\"], as toolchains/rust-cross has)"
        else (rustTargets.${arch} or (throw "kiln: images/${def.name}/image.toml: the rust builder has no target for ${arch}")).triple;
      targetEnv = rustTargets.${arch}.env;
      bin = rust.bin or def.name;
    in
    if !(pathExists lockFile) then throw "kiln: images/${def.name}/image.toml: ${def.build.source}/Cargo.lock is missing; run `cargo generate-lockfile` there and commit it"
    else inRoot {
      name = "kiln-build-${def.name}-${arch}";
      root = rootOf def.build.toolchain;
      crates = map (c: { inherit (c) name version checksum file; }) (appCrates def);
      argv = [ "/usr/bin/cargo" "install" "--locked" "--offline" "--no-track" "--quiet"
        "--path" "${src}" "--root" (builtins.placeholder "out") "--bin" bin "--target" target
        "--config" "source.crates-io.replace-with=\"vendored\""
        "--config" "source.vendored.directory=\"/build/vendor\"" ]
        ++ (if (rust.features or [ ]) != [ ] then [ "--features" (concatStringsSep "," rust.features) ] else [ ])
        ++ (if rust.no_default_features or false then [ "--no-default-features" ] else [ ]);
      env = {
        PATH = "/usr/bin:/bin";
        HOME = "/build/home";
        CARGO_HOME = "/build/home/cargo";
        CARGO_TARGET_DIR = "/build/target";
        CARGO_INCREMENTAL = "0";
        CARGO_ENCODED_RUSTFLAGS = concatStringsSep (fromJSON ''"\u001f"'') [
          "-Ctarget-feature=+crt-static"
          "--remap-path-prefix=${src}=/app"
          "--remap-path-prefix=/build/vendor=/cargo"
          "--remap-path-prefix=/build/target=/target"
        ];
        CFLAGS = "-ffile-prefix-map=/build/vendor=/cargo -ffile-prefix-map=${src}=/app";
        TMPDIR = "/build";
      } // targetEnv;
    };

  # The generic builder: the declared program of the toolchain, in a
  # writable copy of the source, once per target arch.
  commandBuild = { def, arch }: inRoot {
    name = "kiln-build-${def.name}-${arch}";
    root = rootOf def.build.toolchain;
    argv = def.build.command.argv;
    env = (def.build.command.env or { }) // {
      KILN_ARCH = arch;
      HOME = "/build/home";
      TMPDIR = "/build";
    } // (if (def.build.command.env or { }) ? PATH then { } else { PATH = "/usr/bin:/bin"; });
    src = appSources def;
  };

  # The Python builder compiles nothing: the image step installs the
  # wheels pinned in kiln.lock (each a fixed-output path of its SHA-256,
  # put into the store by `kiln fetch`) and copies the source directory.
  pythonWheels = { def, arch }:
    let
      py = (lockedImage def null).python or (throw "kiln: kiln.lock has no wheels for ${def.name}; run `kiln lock`");
      reqFile = root + "/${def.build.source}/${def.build.python.requirements or "requirements.txt"}";
      wheels = py.wheels.${arch} or (throw "kiln: kiln.lock has no ${arch} wheels for ${def.name}; run `kiln lock`");
    in
    if !(pathExists reqFile) then throw "kiln: images/${def.name}/image.toml: ${def.build.source}/${def.build.python.requirements or "requirements.txt"} does not exist"
    else if "sha256:${builtins.hashFile "sha256" reqFile}" != py.requirements then throw "kiln: ${def.build.source}/${def.build.python.requirements or "requirements.txt"} changed since its wheels were locked; run `kiln lock ${def.name}`"
    else map (w: {
      inherit (w) file sha256;
      path = pinnedPath { name = w.file; mode = "flat"; hash = w.sha256; hint = "wheel-is-not-in-the-nix-store/run-kiln-fetch/${w.file}"; };
    }) wheels;

  appBuild = { def, arch }:
    if def.build ? python then appSources def
    else if def.build ? go then goBuild { inherit def arch; }
    else if def.build ? rust then rustBuild { inherit def arch; }
    else if def.build ? command then commandBuild { inherit def arch; }
    else throw "kiln: images/${def.name}/image.toml: [build] names no builder";

  appImage = { def, arch }:
    let
      b = baseOf def;
      locked = lockedImage def null;
      baseArchs = archsOf b.def;
    in
    if !(elem arch baseArchs) then throw "kiln: images/${def.name}/image.toml: base ${def.base} is not built for ${arch}"
    else step {
      name = "kiln-image-${def.name}-${arch}";
      stepName = "image";
      input = baseImageInput { inherit (b) def variant; inherit arch; } // {
        app = {
          definition = def;
          inherit (locked) created inputs;
          files = appBuild { inherit def arch; };
        } // (if def.build ? python then { wheels = pythonWheels { inherit def arch; }; } else { })
          // (if def.build ? rust then { crates = map (c: { inherit (c) name version checksum; }) (appCrates def); } else { });
      };
    };

  imagesDir = root + "/images";
  definitions =
    let
      entries =
        if pathExists imagesDir then readDir imagesDir
        else throw "kiln: the project has no images/ directory; create one with `kiln init` (an example image) or add images/<name>/image.toml";
      dirs = filter (n: entries.${n} == "directory" && pathExists (imagesDir + "/${n}/image.toml")) (attrNames entries);
      read = n: fromTOML (readFile (imagesDir + "/${n}/image.toml"));
      # `extends = "<image>"`: that definition (itself resolved) with this
      # one's top-level keys in place of its own (src/definition.rs reads
      # it the same way). `seen` is the chain so far: a loop is an error.
      resolve = seen: n:
        let
          d = read n;
          p = d.extends;
        in
        if !(d ? extends) then d
        else if !(isString p) || !(pathExists (imagesDir + "/${p}/image.toml")) then throw "kiln: images/${n}/image.toml: extends ${toJSON p}: images/${toString p}/image.toml does not exist"
        else if elem p (seen ++ [ n ]) then throw "kiln: images/${n}/image.toml: extends ${toJSON p}: a definition cannot extend itself (through ${concatStringsSep " -> " (seen ++ [ n p ])})"
        else removeAttrs (resolve (seen ++ [ n ]) p // d) [ "extends" ];
      withParent = resolve [ ];
    in map withParent dirs;

  variantsOf = def: [ null ] ++ attrNames (def.variants or { });

  # Every flake attribute: `<image>[-<variant>]` (multi-arch) and
  # `<image>[-<variant>]-<arch>` (one platform).
  packages = listToAttrs (concatMap
    (def: concatMap
      (variant:
        [{ name = fullName def variant; value = index { inherit def variant; }; }]
        ++ map (arch: { name = "${fullName def variant}-${arch}"; value = image { inherit def variant arch; }; }) (archsOf def))
      (variantsOf def))
    definitions);

  # Policy checks for `nix flake check` (checks.<system>.<image>-policy):
  # the seed's `policy` step evaluates the Rego policies of policy/ (and
  # its *.json data) on the image's definition and on each platform. The
  # files enter as strings, so a check depends on their contents only, not
  # on the rest of the source tree. A denial fails the check.
  # The project's policy/, else kiln's (used, not copied: a project
  # follows kiln's policies until it writes its own).
  policyDir = if pathExists (root + "/policy") then root + "/policy" else kilnRoot + "/policy";
  hasSuffix = suffix: s:
    let n = stringLength s; k = stringLength suffix;
    in n >= k && substring (n - k) k s == suffix;
  policyFiles = dir: rel:
    let entries = readDir dir;
    in concatMap
      (n:
        let kind = entries.${n}; path = dir + "/${n}"; name = "${rel}/${n}";
        in if substring 0 1 n == "." then [ ]
        else if kind == "directory" then policyFiles path name
        else if kind == "regular" then [{ inherit name path; }]
        else [ ])
      (sort (a: b: a < b) (attrNames entries));
  # The policy sources, read once for every check.
  policySources =
    let
      files =
        if pathExists policyDir then policyFiles policyDir "policy"
        else throw "kiln: policy/ is missing (the project's Rego policies, else kiln's)";
      isRego = f: hasSuffix ".rego" f.name && !(hasSuffix "_test.rego" f.name);
      source = f: { inherit (f) name; text = readFile f.path; };
    in
    {
      policies = map source (filter isRego files);
      data = map source (filter (f: hasSuffix ".json" f.name) files);
    };
  policyCheck = { def, variant }:
    let
      full = fullName def variant;
      # An application is judged on its base, with the base's packages.
      b = if def ? base then baseOf def else null;
      locked = if b == null then lockedImage def variant else lockedImage b.def b.variant;
    in
    step {
      name = "kiln-policy-${full}";
      stepName = "policy";
      input = {
        definition = def;
        inherit variant;
        images = listToAttrs (map (arch: { name = arch; value = image { inherit def variant arch; }; }) (archsOf def));
        locked = true;
        lock = mapAttrs
          (arch: plan: listToAttrs (map (n: { name = n; value = removeAttrs (lockedPackage (releaseOf locked) arch n) [ "name" ]; }) plan.packages))
          locked.archs;
        inherit (policySources) policies data;
      } // (if b == null then { } else { base = { definition = b.def; inherit (b) variant; }; });
    };
  policyChecks = listToAttrs (concatMap
    (def: map (variant: { name = "${fullName def variant}-policy"; value = policyCheck { inherit def variant; }; }) (variantsOf def))
    definitions);

  # `nix run .#verify`: the pinned seed's verifier, as bin/verify.
  verify = step {
    name = "kiln-verify";
    stepName = "link";
    input = { links = { "bin/verify" = "${seed}"; }; };
  };

  # What a project's flake outputs: its images, their policy checks and
  # the verifier (flake.nix's `lib.project`).
  flakeOutputs = {
    # `default`: the first image (by directory name), unless one is
    # called so.
    packages.${system} = packages // (if packages ? default || definitions == [ ] then { } else
      { default = packages.${(head definitions).name}; });
    checks.${system} = policyChecks;
    apps.${system} = {
      verify = { type = "app"; program = "${verify}/bin/verify"; };
      default = { type = "app"; program = "${verify}/bin/verify"; };
    };
  };
in
{
  inherit system seed packages step policyChecks verify flakeOutputs toolchainRoot inRoot busybox rustRoot seedFromSource driverFromSource;
}
