//! Closed sets of codes (sex, sample type, …) declared once: the enum, its codes,
//! parsing with an error that lists what is allowed, serde as the code and
//! the OpenAPI schema of the codes.

/// What every value set offers to code that handles them generically, such as
/// validation and the public description of a column.
pub trait ValueSet: Sized + Copy + 'static {
    /// The set's name as users read it, e.g. "sample type".
    const NAME: &'static str;
    /// Every member, in declaration order.
    const ALL: &'static [Self];
    /// Every code, in declaration order.
    const CODES: &'static [&'static str];
    /// The code of this member.
    fn code(self) -> &'static str;
}

/// Declares a value set. Each member is `Variant = "code"`; the code is the one
/// spelling accepted in files and on the wire.
macro_rules! value_set {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($label:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema)]
        pub enum $name {
            $( $(#[$vmeta])* #[schema(rename = $code)] $variant, )+
        }

        impl $crate::value_set::ValueSet for $name {
            const NAME: &'static str = $label;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            const CODES: &'static [&'static str] = &[$($code),+];
            fn code(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }
        }

        impl $name {
            /// The code of this member.
            pub fn code(self) -> &'static str {
                <Self as $crate::value_set::ValueSet>::code(self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                match s {
                    $($code => Ok(Self::$variant),)+
                    _ => Err($crate::Error::UnknownCode {
                        value_set: $label,
                        value: s.to_owned(),
                        allowed: <Self as $crate::value_set::ValueSet>::CODES.join(", "),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                code.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
