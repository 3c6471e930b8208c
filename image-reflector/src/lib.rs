//! ImageRepository scanning and ImagePolicy selection.
