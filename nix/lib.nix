# Derivation builders for kiln images.
#
# There is no nixpkgs here: every derivation is a raw `derivation { ... }`
# whose builder is the pinned kiln seed (a static binary) or one of Nix's
# builtins. Evaluation is pure: it reads the definitions, kiln.lock and the
# seed pin from this repository and nothing from the host.
#
# The JSON each seed step receives is documented in docs/internals.md.
{ root }:
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

  pin = fromJSON (readFile ./seed.json);

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

  # The seed: kiln's own static builder, put into the store by `kiln seed`
  # with `nix-store --add-fixed --recursive sha256`. The URL is never
  # fetched when the seed is present; when it is missing, Nix prints it in
  # its error, so it says what to run.
  seed = derivation {
    name = "kiln-seed";
    inherit system;
    builder = "builtin:fetchurl";
    url = "file:///kiln-seed-is-not-in-the-nix-store/run-kiln-seed-in-the-checkout";
    executable = true;
    unpack = false;
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = pin.narHash;
    preferLocalBuild = true;
  };

  # Store names may not contain `~` or the epoch's `:` (docs/internals.md).
  sanitize = replaceStrings [ "~" ":" ] [ "-" "-" ];

  # A pinned .deb: a flat fixed-output derivation whose hash is the SHA256
  # from Debian's signed index. `kiln fetch` adds the file under the same
  # name, so the build never needs the network.
  deb = p:
    let name = sanitize "${p.name}_${p.version}_${p.architecture}.deb";
    in derivation {
      inherit name system;
      builder = "builtin:fetchurl";
      url = "file:///deb-is-not-in-the-nix-store/run-kiln-fetch/${name}";
      outputHashMode = "flat";
      outputHashAlgo = "sha256";
      outputHash = p.sha256;
      preferLocalBuild = true;
    };

  lockedPackage = arch: name:
    let
      byArch = lock.packages.${arch} or (throw "kiln: kiln.lock has no packages for ${arch}; run `kiln lock`");
      p = byArch.${name} or (throw "kiln: kiln.lock has no ${arch} package ${name}; run `kiln lock`");
    in p // { inherit name; };

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
  layer = { arch, def, names }:
    let
      packages = map (n: let p = lockedPackage arch n; in p // { deb = deb p; }) names;
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
      };
    };

  # A toolchain root: pinned .debs unpacked into one FHS tree by the seed's
  # `root` step (docs/internals.md), with the links the alternatives system
  # would have made. Built once per (toolchain, arch) and shared by every
  # build that runs the toolchain.
  toolchainRoot = { name, arch, names, links ? { } }: step {
    name = sanitize "kiln-root-${name}-${arch}";
    stepName = "root";
    input = {
      packages = map
        (n: let p = lockedPackage arch n; in { name = "${n} ${p.version} (${p.architecture})"; deb = deb p; })
        names;
      inherit links;
    };
  };

  # One program run inside a toolchain root by the seed's `chroot` step
  # (user and mount namespaces, chroot; the environment is exactly `env`).
  inRoot = { name, root, argv, env ? { } }: step {
    inherit name;
    stepName = "chroot";
    input = { inherit root argv env; };
  };

  fullName = def: variant: if variant == null then def.name else "${def.name}-${variant}";

  lockedImage = def: variant:
    let full = fullName def variant;
    in lock.images.${full} or (throw "kiln: kiln.lock has no entry for image ${full}; run `kiln lock`");

  archsOf = def: sort (a: b: a < b) (def.archs or [ "amd64" "arm64" ]);

  # One image for one architecture: a single-platform OCI layout + SBOMs.
  image = { def, variant, arch }:
    let
      locked = lockedImage def variant;
      plan = locked.archs.${arch} or (throw "kiln: kiln.lock has no ${arch} plan for ${fullName def variant}; run `kiln lock`");
    in step {
      name = "kiln-image-${fullName def variant}-${arch}";
      stepName = "image";
      input = {
        definition = def;
        inherit variant arch;
        inherit (locked) created inputs;
        layers = map (names: layer { inherit arch def names; }) plan.layers;
      };
    };

  # The multi-arch image: an OCI layout whose index lists every platform.
  index = { def, variant }: step {
    name = "kiln-${fullName def variant}";
    stepName = "index";
    input = {
      inherit (def) name;
      inherit variant;
      images = map (arch: image { inherit def variant arch; }) (archsOf def);
    };
  };

  imagesDir = root + "/images";
  definitions =
    let
      entries = readDir imagesDir;
      dirs = filter (n: entries.${n} == "directory" && pathExists (imagesDir + "/${n}/image.toml")) (attrNames entries);
    in map (n: fromTOML (readFile (imagesDir + "/${n}/image.toml"))) dirs;

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
  policyDir = root + "/policy";
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
        else throw "kiln: policy/ is missing (the project's Rego policies)";
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
      locked = lockedImage def variant;
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
          (arch: plan: listToAttrs (map (n: { name = n; value = removeAttrs (lockedPackage arch n) [ "name" ]; }) plan.packages))
          locked.archs;
        inherit (policySources) policies data;
      };
    };
  policyChecks = listToAttrs (concatMap
    (def: map (variant: { name = "${fullName def variant}-policy"; value = policyCheck { inherit def variant; }; }) (variantsOf def))
    definitions);

in
{
  inherit system seed packages step policyChecks toolchainRoot inRoot;
}
