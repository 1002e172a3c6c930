pub use kiln_seed::spec;
