//! Calendar arithmetic in China Standard Time for warranties and report periods: the district's
//! one calendar, [`wire::calendar`], under the name the order code has always used.

pub use wire::calendar::*;
