//! Named choices (file formats, precisions): one table per enum gives each value the name it has
//! on the command line and in Python, and a line of help, so the library needs no CLI crate.

/// An enum whose values are chosen by name.
pub trait Choice: Sized + Copy + PartialEq + 'static {
    /// What is being chosen, for errors: "format".
    const WHAT: &'static str;
    /// Every value, with its name and a line of help.
    const ALL: &'static [(Self, &'static str, &'static str)];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|c| c.0 == self).map_or("?", |c| c.1)
    }

    /// The value named `name` (any case), or an error listing the names.
    fn named(name: &str) -> Result<Self, String> {
        Self::ALL.iter().find(|c| c.1.eq_ignore_ascii_case(name)).map(|c| c.0).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|c| c.1).collect();
            format!("unknown {} {name:?} (known: {})", Self::WHAT, names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Choice;
    use crate::data::{Duplicates, Format, WriteFormat};
    use crate::gpu::Precision;

    fn round_trips<T: Choice + std::fmt::Debug>() {
        for &(value, name, help) in T::ALL {
            assert_eq!(T::named(name), Ok(value));
            assert_eq!(T::named(&name.to_uppercase()), Ok(value));
            assert_eq!(value.name(), name);
            assert!(!help.is_empty());
        }
        let e = T::named("nonsense").unwrap_err();
        assert!(e.contains(T::WHAT) && e.contains(T::ALL[0].1), "{e}");
    }

    #[test]
    fn every_choice_is_named_once_and_parses_back() {
        round_trips::<Format>();
        round_trips::<Duplicates>();
        round_trips::<WriteFormat>();
        round_trips::<Precision>();
    }
}
