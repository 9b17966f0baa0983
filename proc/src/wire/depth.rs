//! A nesting bound for decoding peer bytes.
//!
//! Serde's derived decoders recurse once per level of nesting, so a value
//! nested deep enough (a recursive enum fed two megabytes of "one more
//! level" tags) overflows the stack and aborts the process. [`deserialize`]
//! wraps any serde `Deserializer` so that every level of nesting (a
//! sequence, tuple, struct, map, enum, `Some` or newtype) spends one unit of
//! a budget, and a value deeper than the budget is an error instead.
//!
//! The budget travels by value inside the wrappers (no counter to restore,
//! no allocation, a compare per level); every nested deserializer, seed,
//! visitor and access the decoded type sees is wrapped in turn, so no path
//! into nested data escapes the count. (serde_stacker wraps the same places to grow the stack
//! instead; postcard has no bound of its own, and no maintained crate
//! bounds the depth of an arbitrary format.)

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed};

/// How deep a received value may nest: JSON parsers' usual bound. Every
/// value the workspace itself sends nests a handful of levels (a manager's
/// request at most 5). A level costs about 1 KiB of stack in a debug build
/// (50 bytes optimized), so the deepest value fits any thread's stack.
pub(crate) const MAX_DEPTH: u32 = 128;

/// Why [`deserialize`] failed.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    /// The value nests deeper than the limit.
    TooDeep { limit: u32 },
    /// The format's own error.
    Format(E),
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::TooDeep { limit } => write!(
                f,
                "nesting limit exceeded: the value is nested more than {limit} levels deep"
            ),
            Failure::Format(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Failure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Failure::TooDeep { .. } => None,
            Failure::Format(e) => Some(e),
        }
    }
}

/// Deserializes a `T` from `deserializer`, refusing values that nest more
/// than `limit` levels deep.
#[inline]
pub(crate) fn deserialize<'de, T, D>(deserializer: D, limit: u32) -> Result<T, Failure<D::Error>>
where
    T: de::Deserialize<'de>,
    D: de::Deserializer<'de>,
{
    EXCEEDED.with(|e| e.set(false));
    let budget = Budget { left: limit };
    match T::deserialize(Deserializer {
        inner: deserializer,
        budget,
    }) {
        Ok(value) => Ok(value),
        // The format may have replaced our message (postcard drops custom
        // messages): the flag, set only on the way out, tells.
        Err(_) if EXCEEDED.with(Cell::get) => Err(Failure::TooDeep { limit }),
        Err(e) => Err(Failure::Format(e)),
    }
}

thread_local! {
    /// Set when this thread's decode went past its limit.
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

/// Records that the limit was hit, and the error that ends the decode.
#[cold]
#[inline(never)]
fn too_deep<E: de::Error>() -> E {
    EXCEEDED.with(|e| e.set(true));
    E::custom("nesting limit exceeded")
}

/// The levels still allowed below this point.
#[derive(Clone, Copy)]
struct Budget {
    left: u32,
}

impl Budget {
    /// The budget one level down, or the error that ends the decode.
    #[inline]
    fn deeper<E: de::Error>(self) -> Result<Budget, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Budget { left }),
            None => Err(too_deep()),
        }
    }
}

/// A deserializer whose visitors are counted.
struct Deserializer<D> {
    inner: D,
    budget: Budget,
}

/// A visitor that spends one level on each nested value it is given.
struct Visitor<V> {
    inner: V,
    budget: Budget,
}

/// A seed whose deserializer is counted.
struct Seed<S> {
    inner: S,
    budget: Budget,
}

/// Sequence, map, enum and variant accesses whose seeds are counted.
struct Access<A> {
    inner: A,
    budget: Budget,
}

impl<V> Visitor<V> {
    #[inline]
    fn new(inner: V, budget: Budget) -> Self {
        Visitor { inner, budget }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: de::Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* Visitor::new(visitor, self.budget))
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for Deserializer<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        #[inline]
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: de::Visitor<'de>> de::Visitor<'de> for Visitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    #[inline]
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let budget = self.budget.deeper()?;
        self.inner.visit_some(Deserializer { inner: d, budget })
    }

    #[inline]
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let budget = self.budget.deeper()?;
        self.inner
            .visit_newtype_struct(Deserializer { inner: d, budget })
    }

    #[inline]
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget.deeper()?;
        self.inner.visit_seq(Access { inner: seq, budget })
    }

    #[inline]
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget.deeper()?;
        self.inner.visit_map(Access { inner: map, budget })
    }

    #[inline]
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let budget = self.budget.deeper()?;
        self.inner.visit_enum(Access {
            inner: data,
            budget,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.deserialize(Deserializer {
            inner: d,
            budget: self.budget,
        })
    }
}

impl<S> Seed<S> {
    #[inline]
    fn new(inner: S, budget: Budget) -> Self {
        Seed { inner, budget }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed::new(seed, self.budget))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Seed::new(seed, self.budget))
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(Seed::new(seed, self.budget))
    }

    #[inline]
    fn next_entry_seed<K: DeserializeSeed<'de>, V: DeserializeSeed<'de>>(
        &mut self,
        key: K,
        value: V,
    ) -> Result<Option<(K::Value, V::Value)>, A::Error> {
        self.inner
            .next_entry_seed(Seed::new(key, self.budget), Seed::new(value, self.budget))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    #[inline]
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let (value, variant) = self.inner.variant_seed(Seed::new(seed, budget))?;
        Ok((
            value,
            Access {
                inner: variant,
                budget,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner
            .newtype_variant_seed(Seed::new(seed, self.budget))
    }

    #[inline]
    fn tuple_variant<V: de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Visitor::new(visitor, self.budget))
    }

    #[inline]
    fn struct_variant<V: de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Visitor::new(visitor, self.budget))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    use super::*;

    /// A value one level deeper per `Node`: postcard writes it as one tag
    /// byte per level.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Tree {
        Leaf,
        Node(Box<Tree>),
    }

    fn tree(depth: usize) -> Tree {
        (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
    }

    fn decode<'de, T: Deserialize<'de>>(
        bytes: &'de [u8],
        limit: u32,
    ) -> Result<T, Failure<postcard::Error>> {
        deserialize(&mut postcard::Deserializer::from_bytes(bytes), limit)
    }

    #[test]
    fn values_up_to_the_limit_decode_and_one_level_more_does_not() {
        // A tree of n nodes is n + 1 enums.
        let bytes = postcard::to_stdvec(&tree(9)).unwrap();
        assert_eq!(decode::<Tree>(&bytes, 10).unwrap(), tree(9));
        assert!(matches!(
            decode::<Tree>(&bytes, 9),
            Err(Failure::TooDeep { limit: 9 })
        ));
    }

    #[test]
    fn every_kind_of_nesting_counts() {
        fn depth_of<T: Serialize + for<'de> Deserialize<'de>>(value: &T) -> u32 {
            let bytes = postcard::to_stdvec(value).unwrap();
            (0..64)
                .find(|&limit| decode::<T>(&bytes, limit).is_ok())
                .expect("decodes within 64 levels")
        }
        #[derive(Serialize, Deserialize)]
        struct Wrap(u8);
        #[derive(Serialize, Deserialize)]
        struct Pair {
            a: u8,
            b: u8,
        }
        #[derive(Serialize, Deserialize)]
        enum E {
            Unit,
            Tuple(u8, u8),
            Struct { a: u8 },
        }
        assert_eq!(depth_of(&7u64), 0);
        assert_eq!(depth_of(&"text".to_string()), 0);
        assert_eq!(depth_of(&Some(1u8)), 1);
        assert_eq!(depth_of(&Wrap(1)), 1);
        assert_eq!(depth_of(&vec![1u8]), 1);
        assert_eq!(depth_of(&(1u8, 2u8)), 1);
        assert_eq!(depth_of(&Pair { a: 1, b: 2 }), 1);
        assert_eq!(depth_of(&BTreeMap::from([(1u8, 2u8)])), 1);
        assert_eq!(depth_of(&E::Unit), 1);
        assert_eq!(depth_of(&E::Tuple(1, 2)), 2);
        assert_eq!(depth_of(&E::Struct { a: 1 }), 2);
        assert_eq!(depth_of(&vec![Some(vec![(1u8, Wrap(2))])]), 5);
        assert_eq!(depth_of(&BTreeMap::from([(1u8, vec![2u8])])), 2);
    }

    #[test]
    fn megabytes_of_nesting_are_an_error_not_a_stack_overflow() {
        // Two megabytes of `Node` tags: unbounded, this recursion overflows
        // any thread's stack.
        let bytes = vec![1u8; 2 << 20];
        let e = decode::<Tree>(&bytes, MAX_DEPTH).unwrap_err();
        assert!(matches!(e, Failure::TooDeep { limit: MAX_DEPTH }));
        assert_eq!(
            e.to_string(),
            "nesting limit exceeded: the value is nested more than 128 levels deep"
        );
        let bytes = [1u8; 8]; // a Vec of one Vec of one Vec ...
        assert!(matches!(
            decode::<Vec<Vec<Vec<Vec<Vec<Vec<Vec<u8>>>>>>>>(&bytes, 3),
            Err(Failure::TooDeep { limit: 3 })
        ));
    }

    #[test]
    fn the_format_errors_are_kept() {
        assert!(matches!(
            decode::<bool>(&[2], MAX_DEPTH),
            Err(Failure::Format(postcard::Error::DeserializeBadBool))
        ));
        assert!(matches!(
            decode::<Tree>(&[1, 1, 1], MAX_DEPTH),
            Err(Failure::Format(postcard::Error::DeserializeUnexpectedEnd))
        ));
    }

    #[test]
    fn borrowed_data_stays_borrowed() {
        let bytes = postcard::to_stdvec(&("text", &b"raw"[..])).unwrap();
        let (s, b): (&str, &[u8]) = decode(&bytes, MAX_DEPTH).unwrap();
        assert_eq!((s, b), ("text", &b"raw"[..]));
    }
}
