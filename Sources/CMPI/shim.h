// Open MPI's C API (Debian: libopenmpi-dev), with its handle macros wrapped in functions Swift can call.
#include <mpi.h>

static inline MPI_Comm kiln_mpi_world(void) { return MPI_COMM_WORLD; }

static inline int kiln_mpi_init(void) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return MPI_SUCCESS;
    int provided = 0;
    int rc = MPI_Init_thread(0, 0, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return rc;
    // Errors come back as codes (turned into thrown errors) rather than aborting inside the library.
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

static inline int kiln_mpi_finalized(void) { int f = 0; MPI_Finalized(&f); return f; }

/// This process's rank among the processes on its own host.
static inline int kiln_mpi_local_rank(int *rank) {
    MPI_Comm local;
    int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Comm_rank(local, rank);
    MPI_Comm_free(&local);
    return rc;
}

static inline int kiln_mpi_allreduce_sum_float(float *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static inline int kiln_mpi_allreduce_sum_int(int *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
}

static inline int kiln_mpi_iallreduce_sum_float(float *values, int count, MPI_Request *request) {
    return MPI_Iallreduce(MPI_IN_PLACE, values, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, request);
}

static inline int kiln_mpi_testall(int count, MPI_Request *requests, int *done) {
    return MPI_Testall(count, requests, done, MPI_STATUSES_IGNORE);
}

static inline int kiln_mpi_waitall(int count, MPI_Request *requests) {
    return MPI_Waitall(count, requests, MPI_STATUSES_IGNORE);
}

static inline int kiln_mpi_bcast_bytes(void *bytes, int count, int root) {
    return MPI_Bcast(bytes, count, MPI_BYTE, root, MPI_COMM_WORLD);
}

static inline int kiln_mpi_allgather_bytes(const void *mine, void *all, int count) {
    return MPI_Allgather(mine, count, MPI_BYTE, all, count, MPI_BYTE, MPI_COMM_WORLD);
}

static inline int kiln_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

static inline void kiln_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

static inline int kiln_mpi_error_string(int code, char *text, int *length) {
    return MPI_Error_string(code, text, length);
}

static inline int kiln_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int kiln_mpi_success(void) { return MPI_SUCCESS; }
