//! The deployment files — `Dockerfile`, `docker-compose.yml`, the Helm chart in
//! `deploy/helm/nowstream` — checked as far as a machine without a Docker engine or a cluster
//! allows (docs/deployment.md says exactly what that covers):
//!
//! - `docker-compose config` (Debian's docker-compose 1.29 validates without an engine) parses
//!   and resolves the compose file; the resolved services are then checked, and each stage's
//!   mounted config file plus its compose environment is loaded with the stages' own loader.
//! - The chart's templates are checked as text and its values as YAML: every value a template
//!   reads has a default, every default is read, and the default config loads with the variables
//!   the chart's Secrets provide.
//! - The real `helm` (v4.1.4, `scripts/install-helm`) lints the chart strictly and renders it
//!   with variants; the rendered objects are checked, and each stage's config loaded.
//! - The Dockerfile is parsed into stages and instructions.
//! - `.gitignore` and `.dockerignore` keep local secrets (`.env`, `secrets/`) out of commits
//!   and images.

mod compose;
mod dockerfile;
mod helm;
mod helm_render;
mod ignored_files;
mod repo;
mod yaml;
