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

macro_rules! rule_ids {
    ($($name:ident = $n:literal),* $(,)?) => {
        $(
            #[doc = concat!("Rule R", stringify!($n), " of the SSS behaviour specification.")]
            pub const $name: RuleId = RuleId($n);
        )*

        impl RuleId {
            /// Every rule, R1 to R82.
            pub const ALL: [RuleId; 82] = [$($name),*];
        }
    };
}

rule_ids! {
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
    R5 = 5,
    R6 = 6,
    R7 = 7,
    R8 = 8,
    R9 = 9,
    R10 = 10,
    R11 = 11,
    R12 = 12,
    R13 = 13,
    R14 = 14,
    R15 = 15,
    R16 = 16,
    R17 = 17,
    R18 = 18,
    R19 = 19,
    R20 = 20,
    R21 = 21,
    R22 = 22,
    R23 = 23,
    R24 = 24,
    R25 = 25,
    R26 = 26,
    R27 = 27,
    R28 = 28,
    R29 = 29,
    R30 = 30,
    R31 = 31,
    R32 = 32,
    R33 = 33,
    R34 = 34,
    R35 = 35,
    R36 = 36,
    R37 = 37,
    R38 = 38,
    R39 = 39,
    R40 = 40,
    R41 = 41,
    R42 = 42,
    R43 = 43,
    R44 = 44,
    R45 = 45,
    R46 = 46,
    R47 = 47,
    R48 = 48,
    R49 = 49,
    R50 = 50,
    R51 = 51,
    R52 = 52,
    R53 = 53,
    R54 = 54,
    R55 = 55,
    R56 = 56,
    R57 = 57,
    R58 = 58,
    R59 = 59,
    R60 = 60,
    R61 = 61,
    R62 = 62,
    R63 = 63,
    R64 = 64,
    R65 = 65,
    R66 = 66,
    R67 = 67,
    R68 = 68,
    R69 = 69,
    R70 = 70,
    R71 = 71,
    R72 = 72,
    R73 = 73,
    R74 = 74,
    R75 = 75,
    R76 = 76,
    R77 = 77,
    R78 = 78,
    R79 = 79,
    R80 = 80,
    R81 = 81,
    R82 = 82,
}
