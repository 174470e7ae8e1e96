//! Rule identifiers. A rule id matches the numbered list "Rules an engine must implement" at the
//! end of the SSS behaviour specification (`R1` … `R82`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A rule number, printed as `R<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleId(pub u8);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R{}", self.0)
    }
}
