// HDF5 (Debian: libhdf5-dev) for nnabla's .h5 parameter files. The library's type and flag macros expand to
// expressions Swift cannot import, and its traversal takes C callbacks: these small functions wrap what Kiln
// uses. Files are read from and written to memory images (the core driver), so Kiln does its own file I/O
// (bounded reads, atomic writes) and can read an .h5 stored inside an .nnp archive.
#include <hdf5.h>
#include <stdint.h>
#include <string.h>

/// Stops HDF5 printing its error stack: Kiln reports errors itself.
static inline void kiln_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/// Opens a file image held in memory, read-only (the bytes must outlive the file). Negative on failure.
static inline hid_t kiln_h5_open_image(const void *bytes, size_t size) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 || H5Pset_file_image(fapl, (void *)bytes, size) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    hid_t f = H5Fopen("kiln-image.h5", H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

/// Creates an empty file in memory. Negative on failure.
static inline hid_t kiln_h5_create_image(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    if (H5Pset_fapl_core(fapl, 1 << 16, 0) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    hid_t f = H5Fcreate("kiln-image.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

/// The file image's size (with `buffer` NULL), or copies it into `buffer`. Negative on failure.
static inline ssize_t kiln_h5_file_image(hid_t file, void *buffer, size_t size) {
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) return -1;
    return H5Fget_file_image(file, buffer, size);
}

typedef int (*kiln_h5_dataset_fn)(const char *name, void *context);
struct kiln_h5_visit { kiln_h5_dataset_fn each; void *context; };

static herr_t kiln_h5_link(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    struct kiln_h5_visit *v = (struct kiln_h5_visit *)data;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(group, name, H5P_DEFAULT);
    if (o < 0) return -1;
    H5I_type_t t = H5Iget_type(o);
    H5Oclose(o);
    if (t != H5I_DATASET) return 0;
    return v->each(name, v->context);
}

/// Calls `each(path, context)` for every dataset below the root (full paths, in name order); stops when it
/// returns non-zero. Negative on failure.
static inline herr_t kiln_h5_visit_datasets(hid_t file, kiln_h5_dataset_fn each, void *context) {
    struct kiln_h5_visit v = { each, context };
    return H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, kiln_h5_link, &v);
}

/// A dataset's rank (dims in `dims`, at most `max_rank`), -1 on failure or a larger rank. `is_number` is
/// set to 1 for integer and floating-point data.
static inline int kiln_h5_dataset_shape(hid_t file, const char *name, hsize_t *dims, int max_rank, int *is_number) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (rank > max_rank) rank = -1;
    if (rank >= 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) rank = -1;
    H5T_class_t c = type < 0 ? H5T_NO_CLASS : H5Tget_class(type);
    *is_number = c == H5T_FLOAT || c == H5T_INTEGER;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return rank;
}

/// Reads a dataset as float32 (HDF5 converts other number types). Negative on failure.
static inline herr_t kiln_h5_read_floats(hid_t file, const char *name, float *out) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    herr_t r = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    H5Dclose(ds);
    return r;
}

/// An integer, boolean (h5py's enum) or float attribute of one element: 1 found, 0 absent, -1 unreadable.
static inline int kiln_h5_int_attribute(hid_t file, const char *name, const char *attribute, int64_t *value) {
    hid_t ds = H5Oopen(file, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    int result = 0;
    if (H5Aexists(ds, attribute) > 0) {
        result = -1;
        hid_t a = H5Aopen(ds, attribute, H5P_DEFAULT);
        hid_t space = a < 0 ? -1 : H5Aget_space(a);
        hid_t type = a < 0 ? -1 : H5Aget_type(a);
        if (space >= 0 && type >= 0 && H5Sget_simple_extent_npoints(space) == 1) {
            H5T_class_t c = H5Tget_class(type);
            if (c == H5T_INTEGER) {
                if (H5Aread(a, H5T_NATIVE_INT64, value) >= 0) result = 1;
            } else if (c == H5T_FLOAT) {
                double d = 0;
                if (H5Aread(a, H5T_NATIVE_DOUBLE, &d) >= 0 && d > -9e18 && d < 9e18) { *value = (int64_t)d; result = 1; }
            } else if (c == H5T_ENUM) {
                // h5py's bool: an enum over a small integer. Read its base integer type.
                hid_t base = H5Tget_super(type);
                hid_t native = base < 0 ? -1 : H5Tget_native_type(base, H5T_DIR_ASCEND);
                size_t size = native < 0 ? 0 : H5Tget_size(native);
                if (size >= 1 && size <= 8) {
                    unsigned char buffer[8] = {0};
                    if (H5Aread(a, native, buffer) >= 0) {
                        int64_t v = 0;
                        memcpy(&v, buffer, size);
                        *value = v;
                        result = 1;
                    }
                }
                if (native >= 0) H5Tclose(native);
                if (base >= 0) H5Tclose(base);
            }
        }
        if (type >= 0) H5Tclose(type);
        if (space >= 0) H5Sclose(space);
        if (a >= 0) H5Aclose(a);
    }
    H5Oclose(ds);
    return result;
}

/// Writes a float32 dataset at `name` (groups made as needed) with nnabla's attributes: `need_grad` as
/// h5py's bool and `index` as int64. Negative on failure.
static inline herr_t kiln_h5_write_parameter(hid_t file, const char *name, int rank, const hsize_t *dims,
                                             const float *data, int need_grad, int64_t index) {
    herr_t r = -1;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    hid_t scalar = H5Screate(H5S_SCALAR);
    hid_t boolean = H5Tenum_create(H5T_NATIVE_INT8);
    hid_t ds = -1, a = -1, b = -1;
    int8_t no = 0, yes = 1, flag = need_grad ? 1 : 0;
    if (lcpl < 0 || space < 0 || scalar < 0 || boolean < 0) goto done;
    if (H5Pset_create_intermediate_group(lcpl, 1) < 0) goto done;
    if (H5Tenum_insert(boolean, "FALSE", &no) < 0 || H5Tenum_insert(boolean, "TRUE", &yes) < 0) goto done;
    ds = H5Dcreate2(file, name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) goto done;
    a = H5Acreate2(ds, "need_grad", boolean, scalar, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, boolean, &flag) < 0) goto done;
    b = H5Acreate2(ds, "index", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    if (b < 0 || H5Awrite(b, H5T_NATIVE_INT64, &index) < 0) goto done;
    r = 0;
done:
    if (b >= 0) H5Aclose(b);
    if (a >= 0) H5Aclose(a);
    if (ds >= 0) H5Dclose(ds);
    if (boolean >= 0) H5Tclose(boolean);
    if (scalar >= 0) H5Sclose(scalar);
    if (space >= 0) H5Sclose(space);
    if (lcpl >= 0) H5Pclose(lcpl);
    return r;
}

static inline void kiln_h5_close(hid_t file) { H5Fclose(file); }
