//! CUCM's own word on its phones: the endpoint alarms it sends to a remote syslog server
//! ([`syslog`]), their Reason codes ([`reason`]), and the scoring of keepalive's forecasts
//! against them ([`score`]).

pub mod join;
pub mod reason;
pub mod score;
pub mod syslog;
