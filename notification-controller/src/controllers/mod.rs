//! The reconcilers: Receivers (status and webhook path, through the common runner), and the small Alert and
//! Provider loops that only manage finalizers (v1beta3 Alerts and Providers have no status).

pub mod alert;
pub mod provider;
pub mod receiver;
