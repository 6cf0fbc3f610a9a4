#if MPI
import CMPI
#endif
import Foundation
import KilnCore
import KilnGraph
import KilnTraining

/// A `Communicator` over Open MPI (Debian's libopenmpi-dev): the processes `mpirun` started, each one rank of
/// `MPI_COMM_WORLD`. Built when the package's `MPI` trait is on (the default); without it, `shared()`
/// throws and everything else in Kiln works the same.
///
/// Collectives run on the calling thread (MPI is initialised with `MPI_THREAD_FUNNELED`: Kiln's worker
/// threads never call MPI). Errors come back as thrown errors naming the operation and MPI's message; a
/// process that cannot go on should call `abort` so that no other rank waits in a collective forever.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let localRank: Int
    public let size: Int

    nonisolated(unsafe) private static var instance: MPICommunicator?

    /// Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with PMIx).
    public static var launched: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"].contains { env[$0] != nil }
    }

    /// The world of this process, initialising MPI at the first call. Throws when Kiln was built without MPI,
    /// when the process was not started by an MPI launcher, or when MPI fails to start.
    public static func shared() throws -> MPICommunicator {
        if let c = instance { return c }
        guard launched else {
            throw KilnError.invalidData("distributed training needs an MPI launcher: run `mpirun -np N kiln ...` (Debian: apt install openmpi-bin)")
        }
        #if MPI
        try check(kiln_mpi_init(), "MPI_Init_thread")
        var r: Int32 = 0, s: Int32 = 0, l: Int32 = 0
        try check(MPI_Comm_rank(kiln_mpi_world(), &r), "MPI_Comm_rank")
        try check(MPI_Comm_size(kiln_mpi_world(), &s), "MPI_Comm_size")
        try check(kiln_mpi_local_rank(&l), "MPI_Comm_split_type")
        let c = MPICommunicator(rank: Int(r), localRank: Int(l), size: Int(s))
        instance = c
        return c
        #else
        throw KilnError.invalidData("this kiln was built without MPI (the package's MPI trait is off); rebuild with `swift build` after `apt install libopenmpi-dev`")
        #endif
    }

    private init(rank: Int, localRank: Int, size: Int) {
        self.rank = rank
        self.localRank = localRank
        self.size = size
        #if MPI
        requests.reserveCapacity(256)
        #endif
    }

    /// Ends MPI in this process (every rank calls it once, after its last collective).
    public func finalize() {
        #if MPI
        if kiln_mpi_finalized() == 0 { MPI_Finalize() }
        #endif
    }

    /// Ends the whole job: every rank exits with `code`. For a rank that failed, so that none of the others
    /// waits for it in a collective.
    public func abort(_ code: Int32) -> Never {
        #if MPI
        kiln_mpi_abort(code)
        #endif
        exit(code)
    }

    #if MPI
    /// Requests of the reductions started and not yet finished.
    private var requests: [MPI_Request?] = []

    private static func check(_ rc: Int32, _ operation: String) throws {
        guard rc != kiln_mpi_success() else { return }
        var text = [CChar](repeating: 0, count: Int(kiln_mpi_max_error_string()) + 1)
        var length: Int32 = 0
        _ = kiln_mpi_error_string(rc, &text, &length)
        let message = String(decoding: text.prefix(Int(max(0, length))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw KilnError.io("\(operation) failed: \(message) (MPI error \(rc))")
    }

    /// Runs `body` over `count` elements in pieces that MPI's int counts can hold.
    private func chunked(_ count: Int, _ body: (Int, Int32) throws -> Void) throws {
        var start = 0
        while start < count {
            let n = min(count - start, Int(Int32.max))
            try body(start, Int32(n))
            start += n
        }
    }

    public func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws {
        for a in arrays {
            switch a.dtype {
            case .float32:
                try chunked(a.count) { s, n in try Self.check(kiln_mpi_allreduce_sum_float(a.floats + s, n), "MPI_Allreduce") }
                if division { let f = 1 / Float(size); for k in 0..<a.count { a.floats[k] *= f } }
            case .int32:
                try chunked(a.count) { s, n in
                    try Self.check(kiln_mpi_allreduce_sum_int(a.int32s + s, n), "MPI_Allreduce")
                }
                if division { for k in 0..<a.count { a.int32s[k] /= Int32(size) } }
            case .float16:
                throw KilnError.invalidData("allReduce takes float32 or int32 arrays, not float16 (gradients of parameters are float32)")
            }
        }
    }

    public func bcast(_ arrays: [NDArray], src: Int) throws {
        guard src >= 0 && src < size else { throw KilnError.invalidData("bcast from rank \(src) in a world of \(size)") }
        for a in arrays {
            try chunked(a.type.byteCount) { s, n in
                try Self.check(kiln_mpi_bcast_bytes(a.raw + s, n, Int32(src)), "MPI_Bcast")
            }
        }
    }

    public func allGather(_ array: NDArray, _ arrays: [NDArray]) throws {
        guard arrays.count == size, arrays.allSatisfy({ $0.type == array.type }) else {
            throw KilnError.invalidData("allGather needs \(size) arrays of \(array.type), got \(arrays.count)")
        }
        let bytes = array.type.byteCount
        guard bytes <= Int(Int32.max) else { throw KilnError.invalidData("allGather of \(bytes) bytes: at most 2^31-1 per rank") }
        let all = UnsafeMutableRawPointer.allocate(byteCount: max(bytes * size, 1), alignment: 64)
        defer { all.deallocate() }
        try Self.check(kiln_mpi_allgather_bytes(array.raw, all, Int32(bytes)), "MPI_Allgather")
        for (r, a) in arrays.enumerated() { a.raw.copyMemory(from: all + r * bytes, byteCount: bytes) }
    }

    public func barrier() throws { try Self.check(kiln_mpi_barrier(), "MPI_Barrier") }

    public func startAllReduce(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = values.baseAddress else { return }
        try chunked(values.count) { s, n in
            var request: MPI_Request? = nil
            try Self.check(kiln_mpi_iallreduce_sum_float(base + s, n, &request), "MPI_Iallreduce")
            requests.append(request)
        }
    }

    public func progressAllReduces() throws {
        guard !requests.isEmpty else { return }
        var done: Int32 = 0
        try Self.check(kiln_mpi_testall(Int32(requests.count), &requests, &done), "MPI_Testall")
        if done != 0 { requests.removeAll(keepingCapacity: true) }
    }

    public func finishAllReduces() throws {
        guard !requests.isEmpty else { return }
        defer { requests.removeAll(keepingCapacity: true) }
        try Self.check(kiln_mpi_waitall(Int32(requests.count), &requests), "MPI_Waitall")
    }

    public func anyRank(_ flag: Bool) throws -> Bool {
        var v: Int32 = flag ? 1 : 0
        try Self.check(kiln_mpi_allreduce_sum_int(&v, 1), "MPI_Allreduce")
        return v > 0
    }
    #else
    public func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws {
        throw KilnError.invalidData("this kiln was built without MPI")
    }
    #endif
}
