"""get_obj(): a ctypes object over the shared memory (issue 12, item 8).

multiprocessing's get_obj() returns a ctypes object; so does shval's where
the value's type has a ctypes equivalent: simple types, arrays of them, 'c'
and 'u' arrays, ctypes Structures and arrays of them.  The object is built
with from_buffer() over the value's buffer, so it is a view (no copy), and it
keeps the value, hence the segment's mapping, alive while it exists.
ctypes.memset/memmove, byref, addressof, cast and passing it to a C function
work.  Writes through it bypass the value's lock and do not move its version
(as with multiprocessing's get_obj()).  Values made from shval type strings
with no ctypes equivalent (a '16s' string, a 'x:d y:d' struct) get the raw
shval object instead.
"""
import ctypes

LETTERS = {
    'c': ctypes.c_char, 'b': ctypes.c_byte, 'B': ctypes.c_ubyte,
    'h': ctypes.c_short, 'H': ctypes.c_ushort, 'i': ctypes.c_int,
    'I': ctypes.c_uint, 'l': ctypes.c_long, 'L': ctypes.c_ulong,
    'q': ctypes.c_longlong, 'Q': ctypes.c_ulonglong, 'f': ctypes.c_float,
    'd': ctypes.c_double, 'u': ctypes.c_wchar, '?': ctypes.c_bool,
    'n': ctypes.c_ssize_t, 'N': ctypes.c_size_t,
}


def _ctype_of(raw, ctype):
    t = raw.type
    count = int(t[:-1]) if t[:-1].isdigit() else None
    if ctype is not None:
        if issubclass(ctype, ctypes.Structure) and t[-1] == 'B' and count:
            return ctype * (count // ctypes.sizeof(ctype))   # Array(Structure)
        return ctype * count if count else ctype
    if t in LETTERS:
        return LETTERS[t]
    if count and t[-1] in LETTERS:
        return LETTERS[t[-1]] * count
    return None


def ctypes_view(raw, ctype):
    ct = _ctype_of(raw, ctype)
    if ct is None:
        return raw
    return ct.from_buffer(memoryview(raw).cast('B'))
