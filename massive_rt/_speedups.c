/* massive_rt._speedups: the optional compiled accelerator (see massive_rt/speedups.py).
 *
 * It builds the frozen, slotted attrs events straight from the msgspec structs the frame
 * decoder produces: a fresh instance of the event class (tp_alloc, no __init__, no
 * __setattr__) whose slots receive new references to the struct's field values. The
 * pure-Python converters of massive_rt/_structdecode.py build the same objects; this only
 * saves the interpreter's work per field.
 *
 * pack_records appends recording records (massive_rt/recording/fileformat.py's layout) to a
 * bytearray: the recorder's writer packs a read's frames in one call instead of two Python
 * operations per frame.
 *
 * Slot offsets are read once, when a Builder is made, from the member descriptors of both
 * classes; a Builder refuses (TypeError) any class whose layout is not plain object slots,
 * and the Python side then keeps its own converter for that class.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;      /* the event class built */
    PyTypeObject *source;   /* the msgspec struct class read */
    PyObject *event_type;   /* stored in the event_type slot */
    PyObject *fields;       /* tuple of the struct's attribute names (kept for bind()) */
    PyObject *attributes;   /* tuple of the event's attribute names (kept for bind()) */
    PyObject *mark;         /* attribute name whose value keys `marks`, or Py_None */
    PyObject *marks;        /* dict the events are stored in by their mark, or NULL */
    Py_ssize_t count;
    Py_ssize_t mark_index;  /* index into the copied fields, -1 when unmarked */
    Py_ssize_t event_type_offset;
    Py_ssize_t received_offset;
    Py_ssize_t connection_offset;
    Py_ssize_t *source_offsets;
    Py_ssize_t *target_offsets;
} Builder;

static PyTypeObject Builder_Type;

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* The offset of the writable object slot `name` of `type`, or -1 with TypeError set. */
static Py_ssize_t
slot_offset(PyTypeObject *type, PyObject *name)
{
    PyObject *mro = type->tp_mro;
    PyObject *descr = NULL;
    if (mro == NULL || !PyTuple_Check(mro)) {
        PyErr_Format(PyExc_TypeError, "%.200s has no MRO", type->tp_name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro) && descr == NULL; i++) {
        PyObject *base = PyTuple_GET_ITEM(mro, i);
        PyObject *dict = ((PyTypeObject *)base)->tp_dict;
        if (dict == NULL) {
            continue;
        }
        descr = PyDict_GetItemWithError(dict, name);
        if (descr == NULL && PyErr_Occurred()) {
            return -1;
        }
    }
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%.200s.%U is not a slot", type->tp_name, name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    PyTypeObject *owner = ((PyDescrObject *)descr)->d_type;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY) || !PyType_IsSubtype(type, owner)
        || member->offset < (Py_ssize_t)sizeof(PyObject)
        || member->offset + (Py_ssize_t)sizeof(PyObject *) > type->tp_basicsize) {
        PyErr_Format(PyExc_TypeError, "%.200s.%U is not a writable object slot", type->tp_name, name);
        return -1;
    }
    return member->offset;
}

static int
check_event_class(PyTypeObject *cls)
{
    if (cls->tp_dictoffset != 0 || cls->tp_new != PyBaseObject_Type.tp_new
        || cls->tp_alloc != PyType_GenericAlloc || cls->tp_itemsize != 0
        || PyType_HasFeature(cls, Py_TPFLAGS_IS_ABSTRACT)) {
        PyErr_Format(PyExc_TypeError, "%.200s is not a plain slotted class", cls->tp_name);
        return -1;
    }
    return 0;
}

static Builder *
builder_create(PyTypeObject *cls, PyTypeObject *source, PyObject *event_type, PyObject *fields,
               PyObject *attributes, PyObject *mark, PyObject *marks)
{
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
    Builder *self = PyObject_GC_New(Builder, &Builder_Type);
    if (self == NULL) {
        return NULL;
    }
    self->cls = (PyTypeObject *)Py_NewRef(cls);
    self->source = (PyTypeObject *)Py_NewRef(source);
    self->event_type = Py_NewRef(event_type);
    self->fields = Py_NewRef(fields);
    self->attributes = Py_NewRef(attributes);
    self->mark = Py_NewRef(mark);
    self->marks = Py_XNewRef(marks);
    self->count = count;
    self->mark_index = -1;
    self->source_offsets = PyMem_New(Py_ssize_t, count ? count : 1);
    self->target_offsets = PyMem_New(Py_ssize_t, count ? count : 1);
    PyObject_GC_Track(self);
    if (self->source_offsets == NULL || self->target_offsets == NULL) {
        Py_DECREF(self);
        return (Builder *)PyErr_NoMemory();
    }
    PyObject *name;
    if (check_event_class(cls) < 0) {
        goto fail;
    }
    name = PyUnicode_InternFromString("event_type");
    self->event_type_offset = name ? slot_offset(cls, name) : -1;
    Py_XDECREF(name);
    name = PyUnicode_InternFromString("received_at_ns");
    self->received_offset = name ? slot_offset(cls, name) : -1;
    Py_XDECREF(name);
    name = PyUnicode_InternFromString("connection");
    self->connection_offset = name ? slot_offset(cls, name) : -1;
    Py_XDECREF(name);
    if (self->event_type_offset < 0 || self->received_offset < 0 || self->connection_offset < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyTuple_GET_ITEM(fields, i);
        PyObject *attribute = PyTuple_GET_ITEM(attributes, i);
        if (!PyUnicode_Check(field) || !PyUnicode_Check(attribute)) {
            PyErr_SetString(PyExc_TypeError, "field and attribute names must be str");
            goto fail;
        }
        self->source_offsets[i] = slot_offset(source, field);
        self->target_offsets[i] = slot_offset(cls, attribute);
        if (self->source_offsets[i] < 0 || self->target_offsets[i] < 0) {
            goto fail;
        }
        if (mark != Py_None) {
            int same = PyUnicode_Compare(attribute, mark) == 0;
            if (same && PyErr_Occurred()) {
                goto fail;
            }
            if (same) {
                self->mark_index = i;
            }
        }
    }
    if (mark != Py_None && self->mark_index < 0) {
        PyErr_Format(PyExc_ValueError, "mark %R is not among the attributes", mark);
        goto fail;
    }
    /* Two attributes sharing a slot would leak the first value: refuse the layout. */
    Py_ssize_t fixed[3] = {self->event_type_offset, self->received_offset, self->connection_offset};
    for (Py_ssize_t i = 0; i < count + 3; i++) {
        Py_ssize_t a = i < count ? self->target_offsets[i] : fixed[i - count];
        for (Py_ssize_t j = i + 1; j < count + 3; j++) {
            Py_ssize_t b = j < count ? self->target_offsets[j] : fixed[j - count];
            if (a == b) {
                PyErr_Format(PyExc_TypeError, "%.200s: two attributes share one slot", cls->tp_name);
                goto fail;
            }
        }
    }
    return self;
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *
Builder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"cls", "source", "event_type", "fields", "attributes", "mark", NULL};
    PyObject *cls, *source, *event_type, *fields, *attributes, *mark = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!UO!O!|O:Builder", keywords, &PyType_Type, &cls,
                                     &PyType_Type, &source, &event_type, &PyTuple_Type, &fields,
                                     &PyTuple_Type, &attributes, &mark)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(fields) != PyTuple_GET_SIZE(attributes)) {
        PyErr_SetString(PyExc_ValueError, "fields and attributes differ in length");
        return NULL;
    }
    if (mark != Py_None && !PyUnicode_Check(mark)) {
        PyErr_SetString(PyExc_TypeError, "mark must be a str or None");
        return NULL;
    }
    return (PyObject *)builder_create((PyTypeObject *)cls, (PyTypeObject *)source, event_type, fields,
                                      attributes, mark, NULL);
}

/* A new event from `item` (an instance of exactly self->source); NULL with an exception set. */
static PyObject *
builder_build(Builder *self, PyObject *item, PyObject *received_at_ns, PyObject *connection)
{
    if (Py_TYPE(item) != self->source) {
        PyErr_Format(PyExc_TypeError, "expected a %.200s, got %.200s", self->source->tp_name,
                     Py_TYPE(item)->tp_name);
        return NULL;
    }
    /* Every value is read before the event exists: an unset field (impossible for a struct
     * msgspec decoded, every field has a default) fails without a half-built event. */
    for (Py_ssize_t i = 0; i < self->count; i++) {
        if (SLOT(item, self->source_offsets[i]) == NULL) {
            PyErr_Format(PyExc_AttributeError, "%.200s.%U is unset", self->source->tp_name,
                         PyTuple_GET_ITEM(self->fields, i));
            return NULL;
        }
    }
    /* Zeroed and GC-tracked by tp_alloc; nothing below can run Python code or a collection
     * before the last slot is filled, and a traversal would skip the NULL slots anyway. */
    PyObject *event = self->cls->tp_alloc(self->cls, 0);
    if (event == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->count; i++) {
        SLOT(event, self->target_offsets[i]) = Py_NewRef(SLOT(item, self->source_offsets[i]));
    }
    SLOT(event, self->event_type_offset) = Py_NewRef(self->event_type);
    SLOT(event, self->received_offset) = Py_NewRef(received_at_ns);
    SLOT(event, self->connection_offset) = Py_NewRef(connection);
    if (self->marks != NULL) {
        PyObject *key = SLOT(event, self->target_offsets[self->mark_index]);
        if (PyDict_SetItem(self->marks, key, event) < 0) {
            /* An unhashable symbol (hostile JSON) is not marked, as on the Python path. */
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
                Py_DECREF(event);
                return NULL;
            }
            PyErr_Clear();
        }
    }
    return event;
}

static PyObject *
Builder_call(Builder *self, PyObject *args, PyObject *kwargs)
{
    PyObject *item, *received_at_ns, *connection;
    static char *keywords[] = {"item", "received_at_ns", "connection", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:Builder", keywords, &item, &received_at_ns,
                                     &connection)) {
        return NULL;
    }
    return builder_build(self, item, received_at_ns, connection);
}

static PyObject *
Builder_bind(Builder *self, PyObject *marks)
{
    if (!PyDict_CheckExact(marks)) {
        PyErr_SetString(PyExc_TypeError, "marks must be a dict");
        return NULL;
    }
    if (self->mark == Py_None) {
        PyErr_SetString(PyExc_ValueError, "this builder has no mark attribute");
        return NULL;
    }
    return (PyObject *)builder_create(self->cls, self->source, self->event_type, self->fields,
                                      self->attributes, self->mark, marks);
}

static int
Builder_traverse(Builder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cls);
    Py_VISIT(self->source);
    Py_VISIT(self->event_type);
    Py_VISIT(self->fields);
    Py_VISIT(self->attributes);
    Py_VISIT(self->mark);
    Py_VISIT(self->marks);
    return 0;
}

static int
Builder_clear(Builder *self)
{
    Py_CLEAR(self->cls);
    Py_CLEAR(self->source);
    Py_CLEAR(self->event_type);
    Py_CLEAR(self->fields);
    Py_CLEAR(self->attributes);
    Py_CLEAR(self->mark);
    Py_CLEAR(self->marks);
    return 0;
}

static void
Builder_dealloc(Builder *self)
{
    PyObject_GC_UnTrack(self);
    Builder_clear(self);
    PyMem_Free(self->source_offsets);
    PyMem_Free(self->target_offsets);
    PyObject_GC_Del(self);
}

static PyObject *
Builder_repr(Builder *self)
{
    return PyUnicode_FromFormat("<massive_rt._speedups.Builder %s from %s%s>", self->cls->tp_name,
                                self->source->tp_name, self->marks ? " (marking)" : "");
}

static PyObject *
Builder_get_cls(Builder *self, void *closure)
{
    return Py_NewRef(self->cls);
}

static PyMethodDef Builder_methods[] = {
    {"bind", (PyCFunction)Builder_bind, METH_O,
     "bind(marks) -> a Builder that also stores each event in marks[event.<mark>]"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Builder_getset[] = {
    {"cls", (getter)Builder_get_cls, NULL, "The event class built.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Builder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "massive_rt._speedups.Builder",
    .tp_doc = "Builder(cls, source, event_type, fields, attributes, mark=None)\n\n"
              "Builds cls events from source structs: builder(struct, received_at_ns, connection).",
    .tp_basicsize = sizeof(Builder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = Builder_new,
    .tp_call = (ternaryfunc)Builder_call,
    .tp_traverse = (traverseproc)Builder_traverse,
    .tp_clear = (inquiry)Builder_clear,
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_repr = (reprfunc)Builder_repr,
    .tp_methods = Builder_methods,
    .tp_getset = Builder_getset,
};

/* build_events(items, builders, received_at_ns, connection) -> list of events.
 * builders maps a struct class to a Builder or to any callable taking the same three arguments. */
static PyObject *
build_events(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "build_events() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *items = args[0], *builders = args[1], *received_at_ns = args[2], *connection = args[3];
    if (!PyList_CheckExact(items) || !PyDict_CheckExact(builders)) {
        PyErr_SetString(PyExc_TypeError, "build_events() takes a list and a dict");
        return NULL;
    }
    Py_ssize_t size = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(size);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        /* The list may change under a Python converter: read it by index each time. */
        if (i >= PyList_GET_SIZE(items)) {
            PyErr_SetString(PyExc_RuntimeError, "build_events(): the list changed size");
            goto fail;
        }
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, i));
        PyObject *builder = PyDict_GetItemWithError(builders, (PyObject *)Py_TYPE(item));
        PyObject *event;
        if (builder == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetObject(PyExc_KeyError, (PyObject *)Py_TYPE(item));
            }
            Py_DECREF(item);
            goto fail;
        }
        Py_INCREF(builder);
        if (Py_IS_TYPE(builder, &Builder_Type)) {
            event = builder_build((Builder *)builder, item, received_at_ns, connection);
        }
        else {
            event = PyObject_CallFunctionObjArgs(builder, item, received_at_ns, connection, NULL);
        }
        Py_DECREF(builder);
        Py_DECREF(item);
        if (event == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out, i, event);
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* The little-endian bytes of `value` at `at`, `width` of them. */
static void
put_le(char *at, unsigned long long value, int width)
{
    for (int i = 0; i < width; i++) {
        at[i] = (char)(value >> (8 * i));
    }
}

/* pack_records(out, received_at_ns, connection, kind, payloads) -> int: appends one record
 * (u64 received_at_ns, u16 connection, u8 kind, u32 length, payload) per payload to the bytearray
 * `out`; `payloads` is one bytes object or a list of them. Returns the bytes appended. On an error
 * (a bad type, a value out of range) nothing is appended. */
#define RECORD_HEAD 15
static PyObject *
pack_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "pack_records() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *out = args[0], *payloads = args[4];
    if (!PyByteArray_CheckExact(out)) {
        PyErr_SetString(PyExc_TypeError, "pack_records() appends to a bytearray");
        return NULL;
    }
    unsigned long long received = PyLong_AsUnsignedLongLong(args[1]);
    if (received == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long connection = PyLong_AsUnsignedLong(args[2]);
    if (connection == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long kind = PyLong_AsUnsignedLong(args[3]);
    if (kind == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (connection > 0xFFFF || kind > 0xFF) {
        PyErr_SetString(PyExc_OverflowError, "pack_records(): connection must fit 16 bits, kind 8");
        return NULL;
    }
    PyObject *const *items;
    Py_ssize_t count;
    if (PyBytes_CheckExact(payloads)) {
        items = &args[4];
        count = 1;
    }
    else if (PyList_CheckExact(payloads)) {
        items = ((PyListObject *)payloads)->ob_item;
        count = PyList_GET_SIZE(payloads);
    }
    else {
        PyErr_SetString(PyExc_TypeError, "pack_records() takes a bytes object or a list of them");
        return NULL;
    }
    Py_ssize_t added = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyBytes_CheckExact(items[i])) {
            PyErr_Format(PyExc_TypeError, "pack_records(): payload %zd is %.100s, not bytes", i,
                         Py_TYPE(items[i])->tp_name);
            return NULL;
        }
        Py_ssize_t length = PyBytes_GET_SIZE(items[i]);
        if ((unsigned long long)length > 0xFFFFFFFFULL) {
            PyErr_Format(PyExc_OverflowError, "pack_records(): payload %zd is over 4 GiB", i);
            return NULL;
        }
        added += RECORD_HEAD + length;
    }
    /* Nothing below calls back into Python, so the list cannot change while it is copied. */
    Py_ssize_t start = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, start + added) < 0) {
        return NULL;
    }
    char *at = PyByteArray_AS_STRING(out) + start;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t length = PyBytes_GET_SIZE(items[i]);
        put_le(at, received, 8);
        put_le(at + 8, connection, 2);
        put_le(at + 10, kind, 1);
        put_le(at + 11, (unsigned long long)length, 4);
        memcpy(at + RECORD_HEAD, PyBytes_AS_STRING(items[i]), (size_t)length);
        at += RECORD_HEAD + length;
    }
    return PyLong_FromSsize_t(added);
}


/* ReadyGet(ready, get): a callable standing in for a consumer's get() while decoded events wait:
 * it pops the next one from the deque `ready` in C, and otherwise (nothing ready, or arguments
 * other than one optional timeout) calls `get`, the full method, with the same arguments. */
typedef struct {
    PyObject_HEAD
    PyObject *ready;
    PyObject *popleft;
    PyObject *get;
    vectorcallfunc vectorcall;
} ReadyGet;

static PyTypeObject ReadyGet_Type;

static PyObject *
ReadyGet_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ReadyGet *self = (ReadyGet *)op;
    if (self->get == NULL) { /* cleared by the garbage collector (only a finalizer can call it then) */
        PyErr_SetString(PyExc_ReferenceError, "ReadyGet: its consumer was collected");
        return NULL;
    }
    Py_ssize_t given = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL) {
        given += PyTuple_GET_SIZE(kwnames);
    }
    if (given <= 1 && (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0
                       || PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") == 0)) {
        Py_ssize_t waiting = PyObject_Length(self->ready);
        if (waiting < 0) {
            return NULL;
        }
        if (waiting > 0) {
            PyObject *event = PyObject_CallNoArgs(self->popleft);
            if (event != NULL) {
                return event;
            }
            if (!PyErr_ExceptionMatches(PyExc_IndexError)) {
                return NULL;
            }
            PyErr_Clear(); /* another thread took the last one */
        }
    }
    return PyObject_Vectorcall(self->get, args, nargsf, kwnames);
}

static PyObject *
ReadyGet_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *ready, *get;
    static char *names[] = {"ready", "get", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:ReadyGet", names, &ready, &get)) {
        return NULL;
    }
    if (!PyCallable_Check(get)) {
        PyErr_SetString(PyExc_TypeError, "ReadyGet(): get must be callable");
        return NULL;
    }
    PyObject *popleft = PyObject_GetAttrString(ready, "popleft");
    if (popleft == NULL) {
        return NULL;
    }
    ReadyGet *self = PyObject_GC_New(ReadyGet, type);
    if (self == NULL) {
        Py_DECREF(popleft);
        return NULL;
    }
    self->ready = Py_NewRef(ready);
    self->popleft = popleft;
    self->get = Py_NewRef(get);
    self->vectorcall = ReadyGet_call;
    PyObject_GC_Track(self);
    return (PyObject *)self;
}

static int
ReadyGet_traverse(ReadyGet *self, visitproc visit, void *arg)
{
    Py_VISIT(self->ready);
    Py_VISIT(self->popleft);
    Py_VISIT(self->get);
    return 0;
}

static int
ReadyGet_clear(ReadyGet *self)
{
    Py_CLEAR(self->ready);
    Py_CLEAR(self->popleft);
    Py_CLEAR(self->get);
    return 0;
}

static void
ReadyGet_dealloc(ReadyGet *self)
{
    PyObject_GC_UnTrack(self);
    ReadyGet_clear(self);
    PyObject_GC_Del(self);
}

/* What inspect, help() and a repr see: the method it stands in for. */
static PyObject *
ReadyGet_get_attr_of_get(ReadyGet *self, void *name)
{
    if (self->get == NULL) {
        PyErr_SetString(PyExc_AttributeError, (const char *)name);
        return NULL;
    }
    return PyObject_GetAttrString(self->get, (const char *)name);
}

static PyObject *
ReadyGet_get_wrapped(ReadyGet *self, void *closure)
{
    if (self->get == NULL) {
        PyErr_SetString(PyExc_AttributeError, "__wrapped__");
        return NULL;
    }
    return Py_NewRef(self->get);
}

static PyGetSetDef ReadyGet_getset[] = {
    {"__wrapped__", (getter)ReadyGet_get_wrapped, NULL, "The full get() (called when no event is ready).", NULL},
    {"__doc__", (getter)ReadyGet_get_attr_of_get, NULL, NULL, "__doc__"},
    {"__name__", (getter)ReadyGet_get_attr_of_get, NULL, NULL, "__name__"},
    {"__qualname__", (getter)ReadyGet_get_attr_of_get, NULL, NULL, "__qualname__"},
    {NULL}
};

static PyObject *
ReadyGet_repr(ReadyGet *self)
{
    if (self->get == NULL) {
        return PyUnicode_FromString("<ReadyGet (cleared)>");
    }
    return PyObject_Repr(self->get);
}

static PyTypeObject ReadyGet_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "massive_rt._speedups.ReadyGet",
    .tp_doc = "ReadyGet(ready, get): get()'s fast path in C (see massive_rt.consumer).",
    .tp_basicsize = sizeof(ReadyGet),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = ReadyGet_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ReadyGet, vectorcall),
    .tp_traverse = (traverseproc)ReadyGet_traverse,
    .tp_clear = (inquiry)ReadyGet_clear,
    .tp_dealloc = (destructor)ReadyGet_dealloc,
    .tp_getset = ReadyGet_getset,
    .tp_repr = (reprfunc)ReadyGet_repr,
};

static PyMethodDef module_methods[] = {
    {"build_events", (PyCFunction)(void (*)(void))build_events, METH_FASTCALL,
     "build_events(items, builders, received_at_ns, connection) -> list: one event per item, "
     "built by builders[type(item)]."},
    {"pack_records", (PyCFunction)(void (*)(void))pack_records, METH_FASTCALL,
     "pack_records(out, received_at_ns, connection, kind, payloads) -> int: one recording record per "
     "payload (a bytes object or a list of them) appended to the bytearray out; the bytes appended."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "massive_rt._speedups",
    .m_doc = "The optional compiled accelerator of massive_rt (see massive_rt.speedups).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&Builder_Type) < 0 || PyType_Ready(&ReadyGet_Type) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&Builder_Type);
    if (PyModule_AddObject(module, "Builder", (PyObject *)&Builder_Type) < 0) {
        Py_DECREF(&Builder_Type);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&ReadyGet_Type);
    if (PyModule_AddObject(module, "ReadyGet", (PyObject *)&ReadyGet_Type) < 0) {
        Py_DECREF(&ReadyGet_Type);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
