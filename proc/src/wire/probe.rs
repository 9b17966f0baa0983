//! Recovers the message of a failed serialization.
//!
//! postcard keeps no message for errors raised by a type's own `Serialize`
//! (`Error::custom`); it reports "Serde Serialization Error". When an encode
//! fails, the value is serialized once more into this serializer, which
//! writes nothing and keeps the first custom message, so the caller learns why.

use std::fmt::Display;

use serde::Serialize;
use serde::ser::{self, Serializer};

/// The message a failing `Serialize` impl gave, if it gave one.
pub(crate) fn custom_message<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    value.serialize(Probe).err().map(|e| e.0)
}

struct Probe;

#[derive(Debug)]
pub(crate) struct Message(String);

impl Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl ser::Error for Message {
    fn custom<T: Display>(msg: T) -> Self {
        Message(msg.to_string())
    }
}

type R = Result<(), Message>;

macro_rules! ignore {
    ($($name:ident($($t:ty),*);)*) => {
        $(fn $name(self, $(_: $t),*) -> R { Ok(()) })*
    };
}

impl Serializer for Probe {
    type Ok = ();
    type Error = Message;
    type SerializeSeq = Probe;
    type SerializeTuple = Probe;
    type SerializeTupleStruct = Probe;
    type SerializeTupleVariant = Probe;
    type SerializeMap = Probe;
    type SerializeStruct = Probe;
    type SerializeStructVariant = Probe;

    ignore! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_i128(i128); serialize_u8(u8); serialize_u16(u16);
        serialize_u32(u32); serialize_u64(u64); serialize_u128(u128); serialize_f32(f32);
        serialize_f64(f64); serialize_char(char); serialize_str(&str); serialize_bytes(&[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> R {
        v.serialize(Probe)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> R {
        v.serialize(Probe)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> R {
        v.serialize(Probe)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_tuple(self, _: usize) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Probe, Message> {
        Ok(Probe)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Message> {
        Ok(Probe)
    }
}

macro_rules! compound {
    ($($tr:ident :: $m:ident $(($($k:ident: $kt:ty),*))?;)*) => {
        $(impl ser::$tr for Probe {
            type Ok = ();
            type Error = Message;
            fn $m<T: Serialize + ?Sized>(&mut self, $($($k: $kt,)*)? v: &T) -> R {
                v.serialize(Probe)
            }
            fn end(self) -> R {
                Ok(())
            }
        })*
    };
}

compound! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
    SerializeStruct::serialize_field(_k: &'static str);
    SerializeStructVariant::serialize_field(_k: &'static str);
}

impl ser::SerializeMap for Probe {
    type Ok = ();
    type Error = Message;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> R {
        k.serialize(Probe)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        v.serialize(Probe)
    }
    fn end(self) -> R {
        Ok(())
    }
}
