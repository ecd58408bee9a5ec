//! Examples for integrators live beside this crate as `[[example]]` targets.
