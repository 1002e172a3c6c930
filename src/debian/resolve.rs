//! Dependency resolution for one image and one architecture, and the layer
//! plan that follows from it.
//!
//! The model is deliberately simpler than apt's: every package name has one
//! candidate (the highest version across the image's suites, or a pinned
//! one), only Depends and Pre-Depends are followed, and choices are made in
//! a fixed order (breadth first from the roots, clauses in field order) so
//! that the same indexes always give the same set whatever the hash maps do.
//! Conflicts and Breaks are checked on the result rather than steering the
//! choice: a resolved set in which one package conflicts with (or breaks)
//! another is an error naming both and how each came in, and the user
//! settles it with an exclusion or an explicit alternative, as the sets
//! are small and reviewed through the lock. When the user names both
//! packages in `packages.include`, that is taken as meaning both: the
//! conflict is returned as a warning, and the build's file-collision check
//! (which names both packages unless `allow_collisions` says which wins)
//! still guards the files they share.

use super::packages::{parse_provides, parse_relations, BinaryPackage, Dependency, Relation};
use crate::spec::Arch;
use debversion::Version;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown package {name} for {arch} (searched {suites}){hint}")]
    UnknownPackage {
        name: String,
        arch: Arch,
        suites: String,
        hint: String,
    },
    #[error("{arch}: unsatisfiable dependency: {chain}\n  {detail}\n  (searched {suites})")]
    Unsatisfiable {
        arch: Arch,
        chain: String,
        detail: String,
        suites: String,
    },
    #[error("{arch}: {chain} is a virtual package provided by {providers}; name one of them in packages.include (or exclude {virtual_name})")]
    Ambiguous {
        arch: Arch,
        chain: String,
        virtual_name: String,
        providers: String,
    },
    /// `package` and `other` are `name version (how it came in)`.
    #[error("{arch}: {package} has `{relation}`, but the image also installs {other}; exclude one of them or name another alternative in packages.include")]
    Conflict {
        arch: Arch,
        package: String,
        relation: String,
        other: String,
    },
    #[error("{arch}: {package} {version} from {suite}: {field}: {message}")]
    BadField {
        arch: Arch,
        package: String,
        version: String,
        suite: String,
        field: &'static str,
        message: String,
    },
}

/// One available version of a package and the suite it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub pkg: &'a BinaryPackage,
    pub suite: &'a str,
}

/// Everything the image's suites offer for one architecture.
pub struct Universe<'a> {
    arch: Arch,
    suites: Vec<String>,
    /// Sorted by version, highest first; equal versions keep suite order.
    by_name: HashMap<&'a str, Vec<Candidate<'a>>>,
    /// Virtual name → names of packages that provide it in some version.
    providers: HashMap<String, BTreeSet<&'a str>>,
}

impl<'a> Universe<'a> {
    /// `sources` are (suite, packages of that suite for `arch`), in the
    /// image's suite order.
    pub fn new(arch: Arch, sources: &[(&'a str, &'a [BinaryPackage])]) -> Universe<'a> {
        let mut by_name: HashMap<&'a str, Vec<Candidate<'a>>> = HashMap::new();
        let mut providers: HashMap<String, BTreeSet<&'a str>> = HashMap::new();
        for (suite, pkgs) in sources {
            for pkg in pkgs.iter() {
                by_name
                    .entry(pkg.name.as_str())
                    .or_default()
                    .push(Candidate { pkg, suite });
                if !pkg.provides.is_empty() {
                    // Unparsable Provides are reported when the package is chosen.
                    for (name, _) in parse_provides(&pkg.provides).unwrap_or_default() {
                        providers.entry(name).or_default().insert(pkg.name.as_str());
                    }
                }
            }
        }
        for c in by_name.values_mut() {
            // Stable sort: for equal versions the earlier suite wins.
            c.sort_by(|a, b| b.pkg.version.cmp(&a.pkg.version));
        }
        Universe {
            arch,
            suites: sources.iter().map(|(s, _)| s.to_string()).collect(),
            by_name,
            providers,
        }
    }

    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Whether any version of `name` exists (as a real package).
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Whether `name` exists as a real or a virtual package.
    pub fn knows(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.providers.contains_key(name)
    }

    pub fn versions(&self, name: &str) -> &[Candidate<'a>] {
        self.by_name.get(name).map_or(&[], |v| v.as_slice())
    }

    fn suites_text(&self) -> String {
        self.suites.join(", ")
    }
}

/// What resolution is asked for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub roots: Vec<String>,
    pub exclude: Vec<String>,
    /// Versions to prefer when available (packages other images keep).
    pub pins: BTreeMap<String, String>,
}

/// A resolved package set.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    pub packages: BTreeMap<String, Candidate<'a>>,
    /// Package → the packages chosen for its Depends/Pre-Depends.
    pub deps: BTreeMap<String, BTreeSet<String>>,
    /// Conflicts between two packages both named in the request's roots,
    /// installed together as asked (see the module documentation).
    pub accepted_conflicts: Vec<String>,
}

struct Selected<'a> {
    cand: Candidate<'a>,
    /// (package that pulled it in, the dependency as written)
    via: Option<(String, String)>,
}

struct Resolver<'u, 'a> {
    u: &'u Universe<'a>,
    req: &'u Request,
    exclude: BTreeSet<&'u str>,
    selected: BTreeMap<String, Selected<'a>>,
    deps: BTreeMap<String, BTreeSet<String>>,
}

/// Resolves `req` against `u`.
pub fn resolve<'a>(u: &Universe<'a>, req: &Request) -> Result<Resolved<'a>, ResolveError> {
    let mut r = Resolver {
        u,
        req,
        exclude: req.exclude.iter().map(String::as_str).collect(),
        selected: BTreeMap::new(),
        deps: BTreeMap::new(),
    };
    let mut queue = VecDeque::new();
    let mut roots: Vec<&String> = req.roots.iter().collect();
    roots.dedup();
    // All roots are selected before any dependency is looked at, so that a
    // root satisfies an alternative or a virtual dependency of another one.
    for root in roots {
        if r.selected.contains_key(root.as_str()) {
            continue;
        }
        if !u.knows(root) {
            return Err(ResolveError::UnknownPackage {
                name: root.clone(),
                arch: u.arch,
                suites: u.suites_text(),
                hint: String::new(),
            });
        }
        let rel = Relation(vec![Dependency {
            name: root.clone(),
            constraint: None,
        }]);
        if let Some((name, _)) = r.choose(&rel, None)? {
            if !r.selected.contains_key(&name) {
                let cand = r.candidate(&name).expect("chosen packages exist");
                r.selected
                    .insert(name.clone(), Selected { cand, via: None });
                queue.push_back(name);
            }
        }
    }
    while let Some(name) = queue.pop_front() {
        let cand = r.selected[&name].cand;
        let mut rels = Vec::new();
        for (field, text) in [
            ("Pre-Depends", &cand.pkg.pre_depends),
            ("Depends", &cand.pkg.depends),
        ] {
            let parsed = parse_relations(text, u.arch.debian()).map_err(|message| {
                ResolveError::BadField {
                    arch: u.arch,
                    package: name.clone(),
                    version: cand.pkg.version_text.clone(),
                    suite: cand.suite.to_string(),
                    field,
                    message,
                }
            })?;
            rels.extend(parsed);
        }
        let mut mine = BTreeSet::new();
        for rel in &rels {
            let Some((dep, label)) = r.choose(rel, Some(&name))? else {
                continue;
            };
            if dep != name {
                mine.insert(dep.clone());
            }
            if !r.selected.contains_key(&dep) {
                let c = r.candidate(&dep).expect("chosen packages exist");
                r.selected.insert(
                    dep.clone(),
                    Selected {
                        cand: c,
                        via: Some((name.clone(), label)),
                    },
                );
                queue.push_back(dep);
            }
        }
        r.deps.insert(name, mine);
    }
    let accepted_conflicts = r.check_conflicts()?;
    let packages = r.selected.into_iter().map(|(k, s)| (k, s.cand)).collect();
    Ok(Resolved {
        packages,
        deps: r.deps,
        accepted_conflicts,
    })
}

impl<'a> Resolver<'_, 'a> {
    /// The version that would be installed: the pinned one if available, else the highest.
    fn candidate(&self, name: &str) -> Option<Candidate<'a>> {
        let all = self.u.by_name.get(name)?;
        if let Some(pin) = self.req.pins.get(name) {
            if let Some(c) = all.iter().find(|c| &c.pkg.version_text == pin) {
                return Some(*c);
            }
        }
        all.first().copied()
    }

    fn version_of(&self, name: &str) -> Option<&'a Version> {
        self.selected
            .get(name)
            .map(|s| &s.cand.pkg.version)
            .or_else(|| self.candidate(name).map(|c| &c.pkg.version))
    }

    /// Whether `provider` (as it would be installed) provides `dep` acceptably.
    fn provides(&self, provider: &str, dep: &Dependency) -> Result<bool, ResolveError> {
        let Some(c) = self
            .selected
            .get(provider)
            .map(|s| s.cand)
            .or_else(|| self.candidate(provider))
        else {
            return Ok(false);
        };
        let list = parse_provides(&c.pkg.provides).map_err(|message| ResolveError::BadField {
            arch: self.u.arch,
            package: provider.to_string(),
            version: c.pkg.version_text.clone(),
            suite: c.suite.to_string(),
            field: "Provides",
            message,
        })?;
        Ok(list
            .iter()
            .any(|(n, v)| n == &dep.name && dep.accepts(v.as_ref())))
    }

    fn providers_of(&self, dep: &Dependency) -> Result<Vec<&'a str>, ResolveError> {
        let mut out = Vec::new();
        if let Some(names) = self.u.providers.get(&dep.name) {
            for p in names {
                if self.provides(p, dep)? {
                    out.push(*p);
                }
            }
        }
        Ok(out)
    }

    /// Picks the package that satisfies `rel`; `None` when an exclusion
    /// satisfies it. Returns the name and the alternative as written.
    fn choose(
        &self,
        rel: &Relation,
        from: Option<&str>,
    ) -> Result<Option<(String, String)>, ResolveError> {
        if rel.0.iter().any(|d| self.exclude.contains(d.name.as_str())) {
            return Ok(None);
        }
        // 1. Something already selected satisfies an alternative.
        for d in &rel.0 {
            if let Some(s) = self.selected.get(&d.name) {
                if d.accepts(Some(&s.cand.pkg.version)) {
                    return Ok(Some((d.name.clone(), d.to_string())));
                }
            }
        }
        for d in &rel.0 {
            for p in self.providers_of(d)? {
                if self.selected.contains_key(p) {
                    return Ok(Some((p.to_string(), d.to_string())));
                }
            }
        }
        // 2. The first alternative that can be satisfied.
        for d in &rel.0 {
            if self.exclude.contains(d.name.as_str()) {
                continue;
            }
            if let Some(v) = self.version_of(&d.name) {
                if d.accepts(Some(v)) {
                    return Ok(Some((d.name.clone(), d.to_string())));
                }
            }
            let providers = self.providers_of(d)?;
            let usable: Vec<&str> = providers
                .iter()
                .copied()
                .filter(|p| !self.exclude.contains(p))
                .collect();
            match usable.len() {
                // Every provider is excluded: the user has said they don't want it.
                0 if !providers.is_empty() => return Ok(None),
                0 => {}
                1 => return Ok(Some((usable[0].to_string(), d.to_string()))),
                _ => {
                    let providers = usable
                        .iter()
                        .map(|p| {
                            format!(
                                "{p} {}",
                                self.candidate(p)
                                    .map_or(String::new(), |c| c.pkg.version_text.clone())
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(ResolveError::Ambiguous {
                        arch: self.u.arch,
                        chain: self.chain(from, &d.to_string()),
                        virtual_name: d.name.clone(),
                        providers,
                    });
                }
            }
        }
        Err(ResolveError::Unsatisfiable {
            arch: self.u.arch,
            chain: self.chain(from, &rel.to_string()),
            detail: self.explain(rel),
            suites: self.u.suites_text(),
        })
    }

    /// Fails when a selected package conflicts with or breaks another
    /// selected one (by name and version, or through what it provides).
    /// A package's relations about itself, or about a virtual name it
    /// provides itself, are Debian's "only one provider" idiom and pass.
    /// Between two roots the conflict is returned instead, as a warning.
    fn check_conflicts(&self) -> Result<Vec<String>, ResolveError> {
        let mut accepted = Vec::new();
        for (name, s) in &self.selected {
            let cand = s.cand;
            for (field, text) in [
                ("Conflicts", &cand.pkg.conflicts),
                ("Breaks", &cand.pkg.breaks),
            ] {
                if text.is_empty() {
                    continue;
                }
                let rels = parse_relations(text, self.u.arch.debian()).map_err(|message| {
                    ResolveError::BadField {
                        arch: self.u.arch,
                        package: name.clone(),
                        version: cand.pkg.version_text.clone(),
                        suite: cand.suite.to_string(),
                        field,
                        message,
                    }
                })?;
                for d in rels.iter().flat_map(|r| r.0.iter()) {
                    for (other, o) in &self.selected {
                        if other == name {
                            continue;
                        }
                        let hit = (other == &d.name && d.accepts(Some(&o.cand.pkg.version)))
                            || (other != &d.name && self.provides(other, d)?);
                        if hit && s.via.is_none() && o.via.is_none() {
                            accepted.push(format!(
                                "{}: {name} {} has `{field}: {d}` but {other} {} is installed too, as both are named in packages.include",
                                self.u.arch, cand.pkg.version_text, o.cand.pkg.version_text
                            ));
                        } else if hit {
                            return Err(ResolveError::Conflict {
                                arch: self.u.arch,
                                package: format!(
                                    "{name} {} ({})",
                                    cand.pkg.version_text,
                                    self.pulled_in(name)
                                ),
                                relation: format!("{field}: {d}"),
                                other: format!(
                                    "{other} {} ({})",
                                    o.cand.pkg.version_text,
                                    self.pulled_in(other)
                                ),
                            });
                        }
                    }
                }
            }
        }
        Ok(accepted)
    }

    /// How a selected package came in: `root → dep → ...`, or that it is a root.
    fn pulled_in(&self, name: &str) -> String {
        match self.selected.get(name).and_then(|s| s.via.clone()) {
            Some((parent, label)) => format!("via {}", self.chain(Some(&parent), &label)),
            None => "named in packages.include".into(),
        }
    }

    /// `root → dep (as written) → ... → last`.
    fn chain(&self, from: Option<&str>, last: &str) -> String {
        let mut steps = vec![last.to_string()];
        let mut cur = from.map(str::to_string);
        while let Some(name) = cur {
            match self.selected.get(&name).and_then(|s| s.via.clone()) {
                Some((parent, label)) => {
                    steps.push(label);
                    cur = Some(parent);
                }
                None => {
                    steps.push(name);
                    cur = None;
                }
            }
        }
        steps.reverse();
        steps.join(" → ")
    }

    /// What exists for each alternative of an unsatisfiable clause.
    fn explain(&self, rel: &Relation) -> String {
        let mut parts = Vec::new();
        for d in &rel.0 {
            let versions = self.u.versions(&d.name);
            let mut s = if versions.is_empty() {
                format!("{}: no such package", d.name)
            } else {
                let vs: Vec<String> = versions
                    .iter()
                    .map(|c| format!("{} ({})", c.pkg.version_text, c.suite))
                    .collect();
                format!("{}: available {}", d.name, vs.join(", "))
            };
            if let Some(provs) = self.u.providers.get(&d.name) {
                let list: Vec<String> = provs
                    .iter()
                    .map(|p| {
                        let c = self.candidate(p).expect("providers exist");
                        let provided = parse_provides(&c.pkg.provides)
                            .unwrap_or_default()
                            .into_iter()
                            .find(|(n, _)| n == &d.name)
                            .and_then(|(_, v)| v)
                            .map_or(String::new(), |v| format!(" (= {v})"));
                        format!("{p}{provided}")
                    })
                    .collect();
                s.push_str(&format!("; provided by {}", list.join(", ")));
            }
            parts.push(s);
        }
        parts.join("\n  ")
    }
}

impl fmt::Display for Candidate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.pkg.name, self.pkg.version_text, self.suite
        )
    }
}

/// Orders the resolved set so that dependencies come first (ties and
/// dependency cycles broken by name), then merges layers down to `budget`
/// (which includes kiln's own generated layer): when there are more than
/// `budget - 1` packages, the `budget - 2` largest .debs keep their own
/// layer and all others share one, placed where its earliest member was.
pub fn plan_layers(
    deps: &BTreeMap<String, BTreeSet<String>>,
    sizes: &BTreeMap<String, u64>,
    budget: u32,
) -> Vec<Vec<String>> {
    let order = topo_order(deps);
    let budget = budget as usize;
    if order.len() <= budget.saturating_sub(1) {
        return order.into_iter().map(|n| vec![n]).collect();
    }
    let mut by_size: Vec<&String> = order.iter().collect();
    by_size.sort_by(|a, b| {
        sizes
            .get(*b)
            .unwrap_or(&0)
            .cmp(sizes.get(*a).unwrap_or(&0))
            .then(a.cmp(b))
    });
    let keep: BTreeSet<&String> = by_size.into_iter().take(budget.saturating_sub(2)).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut group_at: Option<usize> = None;
    for name in &order {
        if keep.contains(name) {
            out.push(vec![name.clone()]);
        } else {
            match group_at {
                Some(i) => out[i].push(name.clone()),
                None => {
                    group_at = Some(out.len());
                    out.push(vec![name.clone()]);
                }
            }
        }
    }
    out
}

/// Topological order of a dependency graph, dependencies first. Strongly
/// connected components (Debian has cycles, e.g. libc6 ↔ libgcc-s1) are
/// emitted together in name order; among ready components the one with
/// the smallest name goes first.
pub fn topo_order(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let names: Vec<&String> = {
        let mut all: BTreeSet<&String> = deps.keys().collect();
        for ds in deps.values() {
            all.extend(ds.iter());
        }
        all.into_iter().collect()
    };
    let index: BTreeMap<&String, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            deps.get(*n)
                .map_or(Vec::new(), |ds| ds.iter().map(|d| index[d]).collect())
        })
        .collect();
    let comp = tarjan(&edges);
    let ncomp = comp.iter().copied().max().map_or(0, |m| m + 1);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); ncomp];
    for (v, &c) in comp.iter().enumerate() {
        members[c].push(v);
    }
    // Component c waits for the distinct components it depends on.
    let mut waiting: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); ncomp];
    let mut dependents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); ncomp];
    for (v, es) in edges.iter().enumerate() {
        for &w in es {
            let (cv, cw) = (comp[v], comp[w]);
            if cv != cw {
                waiting[cv].insert(cw);
                dependents[cw].insert(cv);
            }
        }
    }
    // Members are indexes into the sorted names, so the first is the smallest.
    let key = |c: usize| members[c][0];
    let mut ready: BTreeSet<(usize, usize)> = (0..ncomp)
        .filter(|&c| waiting[c].is_empty())
        .map(|c| (key(c), c))
        .collect();
    let mut out = Vec::with_capacity(names.len());
    while let Some((_, c)) = ready.pop_first() {
        for &v in &members[c] {
            out.push(names[v].clone());
        }
        for &d in &dependents[c] {
            waiting[d].remove(&c);
            if waiting[d].is_empty() {
                ready.insert((key(d), d));
            }
        }
    }
    out
}

/// Component id per vertex (iterative Tarjan, so deep chains cannot overflow the stack).
fn tarjan(edges: &[Vec<usize>]) -> Vec<usize> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comp = vec![usize::MAX; n];
    let mut next_index = 0;
    let mut next_comp = 0;
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut call: Vec<(usize, usize)> = vec![(start, 0)];
        index[start] = next_index;
        low[start] = next_index;
        next_index += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut i)) = call.last_mut() {
            if *i < edges[v].len() {
                let w = edges[v][*i];
                *i += 1;
                if index[w] == usize::MAX {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    loop {
                        let w = stack.pop().expect("tarjan stack");
                        on_stack[w] = false;
                        comp[w] = next_comp;
                        if w == v {
                            break;
                        }
                    }
                    next_comp += 1;
                }
            }
        }
    }
    comp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::packages::parse_packages;

    fn pkg(name: &str, version: &str, extra: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/main/{name}_{version}.deb\nSize: {}\nSHA256: {}\n{extra}\n",
            name.len() * 100,
            "ab".repeat(32)
        )
    }

    fn index(entries: &[String]) -> Vec<BinaryPackage> {
        parse_packages(&entries.join("\n"), "fixture").unwrap()
    }

    fn main_suite() -> Vec<BinaryPackage> {
        index(&[
            pkg("libc6", "2.36-9", "Depends: libgcc-s1"),
            pkg(
                "libgcc-s1",
                "12.2.0-14",
                "Depends: gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)",
            ),
            pkg("gcc-12-base", "12.2.0-14", ""),
            pkg(
                "tzdata",
                "2024a-0+deb12u1",
                "Depends: debconf (>= 0.5) | debconf-2.0",
            ),
            pkg(
                "debconf",
                "1.5.82",
                "Pre-Depends: perl-base (>= 5.20.1-3~)\nProvides: debconf-2.0",
            ),
            pkg("perl-base", "5.36.0-7", ""),
            pkg(
                "app",
                "1.0",
                "Depends: libc6 (>= 2.34), mawk | gawk, awk-virtual, libssl3 (>= 3.0.9)",
            ),
            pkg("mawk", "1.3.4", "Provides: awk-virtual"),
            pkg("gawk", "5.2.1", "Provides: awk-virtual"),
            pkg("libssl3", "3.0.9-1", "Depends: libc6"),
            pkg("needs-mta", "1", "Depends: mail-transport-agent"),
            pkg("exim4", "4.96", "Provides: mail-transport-agent"),
            pkg("postfix", "3.7", "Provides: mail-transport-agent"),
            pkg("needs-new-libc", "1", "Depends: libc6 (>= 2.40)"),
            pkg("chain-top", "1", "Depends: chain-mid"),
            pkg("chain-mid", "1", "Depends: needs-new-libc"),
            pkg("needs-abi", "1", "Depends: libfoo-abi-2 (>= 2)"),
            pkg("libfoo2", "2.1", "Provides: libfoo-abi-2 (= 2.1)"),
            pkg("needs-unversioned-abi", "1", "Depends: libbar-abi (>= 1)"),
            pkg("libbar", "1", "Provides: libbar-abi"),
            pkg("amd64-only", "1", ""),
            pkg("uses-amd64-only", "1", "Depends: amd64-only"),
            pkg(
                "sole-logger",
                "1",
                "Provides: system-log-daemon\nConflicts: system-log-daemon, sole-logger",
            ),
            pkg("breaks-old-libc", "1", "Breaks: libc6 (<< 2.30)"),
            pkg("breaks-this-libc", "1", "Breaks: libc6 (<< 2.40)"),
            pkg("uses-breaker", "1", "Depends: breaks-this-libc"),
            pkg("hates-mta", "1", "Conflicts: mail-transport-agent"),
            pkg("wants-exim", "1", "Depends: exim4"),
        ])
    }

    fn updates_suite() -> Vec<BinaryPackage> {
        index(&[
            pkg("libssl3", "3.0.11-1~deb12u2", "Depends: libc6"),
            pkg("libssl3-old", "1", ""),
        ])
    }

    fn resolve_names(roots: &[&str], exclude: &[&str]) -> Result<Vec<String>, ResolveError> {
        let (m, u) = (main_suite(), updates_suite());
        let uni = Universe::new(Arch::Amd64, &[("bookworm", &m), ("bookworm-updates", &u)]);
        let req = Request {
            roots: roots.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            pins: BTreeMap::new(),
        };
        resolve(&uni, &req).map(|r| r.packages.keys().cloned().collect())
    }

    #[test]
    fn dependencies_alternatives_virtuals_and_highest_version() {
        let (m, u) = (main_suite(), updates_suite());
        let uni = Universe::new(Arch::Amd64, &[("bookworm", &m), ("bookworm-updates", &u)]);
        let r = resolve(
            &uni,
            &Request {
                roots: vec!["app".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let names: Vec<&str> = r.packages.keys().map(String::as_str).collect();
        // mawk: first alternative; awk-virtual: satisfied by the already selected mawk.
        assert_eq!(
            names,
            [
                "app",
                "gcc-12-base",
                "libc6",
                "libgcc-s1",
                "libssl3",
                "mawk"
            ]
        );
        let ssl = r.packages["libssl3"];
        assert_eq!(
            (ssl.pkg.version_text.as_str(), ssl.suite),
            ("3.0.11-1~deb12u2", "bookworm-updates")
        );
        assert_eq!(
            r.deps["app"],
            ["libc6", "libssl3", "mawk"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
    }

    #[test]
    fn conflicts_and_breaks_between_selected_packages_are_errors_naming_both() {
        // Versioned Breaks that the installed version does not meet pass, and
        // so do relations on the package itself or a virtual name it provides.
        resolve_names(&["libc6", "breaks-old-libc"], &[]).unwrap();
        resolve_names(&["sole-logger"], &[]).unwrap();

        let err = resolve_names(&["libc6", "uses-breaker"], &[]).unwrap_err();
        assert!(matches!(err, ResolveError::Conflict { .. }), "{err:?}");
        let text = err.to_string();
        for want in [
            "breaks-this-libc 1 (via uses-breaker → breaks-this-libc)",
            "`Breaks: libc6 (<< 2.40)`",
            "libc6 2.36-9 (named in packages.include)",
            "exclude one of them",
        ] {
            assert!(text.contains(want), "{want:?} not in {text}");
        }

        // Through a virtual package the other one provides.
        let err = resolve_names(&["hates-mta", "wants-exim"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`Conflicts: mail-transport-agent`") && err.contains("exim4 4.96"),
            "{err}"
        );
    }

    #[test]
    fn conflicting_packages_both_named_by_the_user_are_installed_with_a_warning() {
        let (m, u) = (main_suite(), updates_suite());
        let uni = Universe::new(Arch::Amd64, &[("bookworm", &m), ("bookworm-updates", &u)]);
        let r = resolve(
            &uni,
            &Request {
                roots: vec!["hates-mta".into(), "exim4".into()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.packages.len(), 2);
        assert_eq!(
            r.accepted_conflicts,
            ["amd64: hates-mta 1 has `Conflicts: mail-transport-agent` but exim4 4.96 is installed too, as both are named in packages.include"]
        );
    }

    #[test]
    fn alternative_already_selected_is_preferred() {
        let names = resolve_names(&["gawk", "app"], &[]).unwrap();
        assert!(
            names.contains(&"gawk".to_string()) && !names.contains(&"mawk".to_string()),
            "{names:?}"
        );
    }

    #[test]
    fn exclusions_satisfy_clauses_directly_or_as_virtual_name() {
        let names = resolve_names(&["tzdata"], &["debconf", "debconf-2.0"]).unwrap();
        assert_eq!(names, ["tzdata"]);
        // Excluding only the virtual name also satisfies `debconf | debconf-2.0`.
        assert_eq!(
            resolve_names(&["tzdata"], &["debconf-2.0"]).unwrap(),
            ["tzdata"]
        );
        // Without exclusions debconf and its Pre-Depends come in.
        assert_eq!(
            resolve_names(&["tzdata"], &[]).unwrap(),
            ["debconf", "perl-base", "tzdata"]
        );
        // Excluding every provider of a virtual package satisfies it too.
        assert_eq!(
            resolve_names(&["needs-mta"], &["exim4", "postfix"]).unwrap(),
            ["needs-mta"]
        );
    }

    #[test]
    fn ambiguous_virtual_lists_providers() {
        let e = resolve_names(&["needs-mta"], &[]).unwrap_err().to_string();
        assert!(
            e.contains(
                "mail-transport-agent is a virtual package provided by exim4 4.96, postfix 3.7"
            ),
            "{e}"
        );
        assert!(e.contains("needs-mta → mail-transport-agent"), "{e}");
        // Naming one resolves it.
        assert_eq!(
            resolve_names(&["needs-mta", "postfix"], &[]).unwrap(),
            ["needs-mta", "postfix"]
        );
    }

    #[test]
    fn versioned_provides() {
        assert_eq!(
            resolve_names(&["needs-abi"], &[]).unwrap(),
            ["libfoo2", "needs-abi"]
        );
        let e = resolve_names(&["needs-unversioned-abi"], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("libbar-abi (>= 1)") && e.contains("provided by libbar"),
            "{e}"
        );
    }

    #[test]
    fn unknown_package_names_arch_and_suites() {
        let e = resolve_names(&["nope"], &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown package nope for amd64 (searched bookworm, bookworm-updates)"
        );
    }

    #[test]
    fn unsatisfiable_dependency_names_the_chain_and_versions() {
        let e = resolve_names(&["chain-top"], &[]).unwrap_err().to_string();
        assert!(e.starts_with("amd64: unsatisfiable dependency: chain-top → chain-mid → needs-new-libc → libc6 (>= 2.40)"), "{e}");
        assert!(e.contains("libc6: available 2.36-9 (bookworm)"), "{e}");
    }

    #[test]
    fn package_missing_on_one_arch_names_that_arch() {
        let m = main_suite();
        let arm: Vec<BinaryPackage> = m
            .iter()
            .filter(|p| p.name != "amd64-only")
            .cloned()
            .collect();
        let req = Request {
            roots: vec!["uses-amd64-only".into()],
            ..Default::default()
        };
        assert!(resolve(&Universe::new(Arch::Amd64, &[("bookworm", &m)]), &req).is_ok());
        let e = resolve(&Universe::new(Arch::Arm64, &[("bookworm", &arm)]), &req)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("arm64: unsatisfiable dependency: uses-amd64-only → amd64-only"),
            "{e}"
        );
        assert!(e.contains("amd64-only: no such package"), "{e}");
    }

    #[test]
    fn pins_win_when_available() {
        let (m, u) = (main_suite(), updates_suite());
        let uni = Universe::new(Arch::Amd64, &[("bookworm", &m), ("bookworm-updates", &u)]);
        let req = Request {
            roots: vec!["libssl3".into()],
            pins: [("libssl3".to_string(), "3.0.9-1".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(
            resolve(&uni, &req).unwrap().packages["libssl3"]
                .pkg
                .version_text,
            "3.0.9-1"
        );
    }

    #[test]
    fn resolution_is_independent_of_input_order() {
        let (mut m, u) = (main_suite(), updates_suite());
        let a = resolve_names(&["app", "tzdata"], &[]).unwrap();
        m.reverse();
        let uni = Universe::new(Arch::Amd64, &[("bookworm", &m), ("bookworm-updates", &u)]);
        let b: Vec<String> = resolve(
            &uni,
            &Request {
                roots: vec!["app".into(), "tzdata".into()],
                ..Default::default()
            },
        )
        .unwrap()
        .packages
        .into_keys()
        .collect();
        assert_eq!(a, b);
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn topological_order_with_cycles() {
        let g = graph(&[
            ("app", &["libc6", "libssl3", "mawk"]),
            ("libc6", &["libgcc-s1"]),
            ("libgcc-s1", &["libc6", "gcc-12-base"]),
            ("gcc-12-base", &[]),
            ("libssl3", &["libc6"]),
            ("mawk", &["libc6"]),
            ("zz-standalone", &[]),
        ]);
        assert_eq!(
            topo_order(&g),
            [
                "gcc-12-base",
                "libc6",
                "libgcc-s1",
                "libssl3",
                "mawk",
                "app",
                "zz-standalone"
            ]
        );
    }

    #[test]
    fn layer_plan_merges_the_smallest() {
        let g = graph(&[
            ("a", &["b", "c"]),
            ("b", &["d"]),
            ("c", &["d"]),
            ("d", &[]),
            ("e", &[]),
        ]);
        let sizes: BTreeMap<String, u64> =
            [("a", 50), ("b", 10), ("c", 500), ("d", 20), ("e", 400)]
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
        let one = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Within budget: one layer each (5 packages + generated = 6 <= 6).
        assert_eq!(
            plan_layers(&g, &sizes, 6),
            vec![
                one(&["d"]),
                one(&["b"]),
                one(&["c"]),
                one(&["a"]),
                one(&["e"])
            ]
        );
        // Budget 4: the 2 largest (c, e) keep theirs, the rest merge at d's place.
        assert_eq!(
            plan_layers(&g, &sizes, 4),
            vec![one(&["d", "b", "a"]), one(&["c"]), one(&["e"])]
        );
        // Budget 2: everything shares one layer.
        assert_eq!(
            plan_layers(&g, &sizes, 2),
            vec![one(&["d", "b", "c", "a", "e"])]
        );
    }
}
