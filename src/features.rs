//! What this build of segflow carries beyond its core. Running on a Ballista cluster
//! (`cluster`), Delta Lake tables (`delta`) and the PostgreSQL protocol server (`serve`) are
//! cargo features: the first two alone are a sixth of a cold build, so the quick build of
//! `cargo run -- demo` leaves them all out, while CI, and `cargo install --features full`, carry
//! them all (docs/development.md, "Features"). A pipeline
//! that needs one a build lacks is refused before anything runs, saying which.

/// One optional part of segflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Cluster,
    Delta,
    Serve,
}

impl Feature {
    /// Its name as cargo knows it.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Cluster => "cluster",
            Feature::Delta => "delta",
            Feature::Serve => "serve",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Feature::Cluster => "running on a Ballista cluster",
            Feature::Delta => "Delta Lake tables",
            Feature::Serve => "the PostgreSQL protocol server",
        }
    }
}

/// Which features a build has: [`Features::BUILT`] for this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub cluster: bool,
    pub delta: bool,
    pub serve: bool,
}

impl Features {
    pub const BUILT: Features = Features {
        cluster: cfg!(feature = "cluster"),
        delta: cfg!(feature = "delta"),
        serve: cfg!(feature = "serve"),
    };

    pub fn has(self, feature: Feature) -> bool {
        match feature {
            Feature::Cluster => self.cluster,
            Feature::Delta => self.delta,
            Feature::Serve => self.serve,
        }
    }

    /// `Ok` when this build has `feature`; else what `needs` it, and how to build one that has.
    pub fn require(self, feature: Feature, needs: impl Into<String>) -> Result<(), NotBuilt> {
        if self.has(feature) {
            Ok(())
        } else {
            Err(NotBuilt {
                needs: needs.into(),
                feature,
            })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{needs} needs {what}, which this build of segflow leaves out: build it with `cargo build \
     --release --features {name}` (or `--features full`), as docs/development.md, \"Features\", \
     says",
    what = .feature.what(),
    name = .feature.name()
)]
pub struct NotBuilt {
    pub needs: String,
    pub feature: Feature,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_feature_names_what_needs_it_and_the_build_that_has_it() {
        let none = Features {
            cluster: false,
            delta: false,
            serve: false,
        };
        let refused = none
            .require(Feature::Delta, "output 'rfm_scores' (format: delta)")
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "output 'rfm_scores' (format: delta) needs Delta Lake tables, which this build of \
             segflow leaves out: build it with `cargo build --release --features delta` (or \
             `--features full`), as docs/development.md, \"Features\", says"
        );
        let all = Features {
            cluster: true,
            delta: true,
            serve: true,
        };
        assert_eq!(all.require(Feature::Cluster, "engine.cluster"), Ok(()));
    }
}
