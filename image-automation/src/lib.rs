//! ImageUpdateAutomation.
