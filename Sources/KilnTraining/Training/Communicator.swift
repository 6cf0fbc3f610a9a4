import KilnCore
import KilnGraph
import KilnRuntime

/// Exchanges arrays between the processes of a distributed (data-parallel) run: nnabla's `Communicator`.
/// Kiln's transport is `MPICommunicator` (the KilnMPI target, Open MPI); `SingleProcessCommunicator` is the
/// world of one process.
///
/// Every operation is collective: each rank calls it, in the same order, with arrays of the same shapes.
public protocol Communicator: AnyObject {
    /// This process's rank in the world, 0..<size.
    var rank: Int { get }
    /// This process's rank among those on its host.
    var localRank: Int { get }
    /// Processes in the world.
    var size: Int { get }
    /// Sums each array over the ranks, in place on every rank; with `division`, divides by `size` (the
    /// mean). nnabla's `inplace` chose between packing the arrays into one buffer and reducing each in place:
    /// here each array is reduced in place either way (one call per array; buckets are the packed form).
    func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws
    /// Copies each array of rank `src` into the same array of every other rank.
    func bcast(_ arrays: [NDArray], src: Int) throws
    /// Gathers `array` of every rank r into `arrays[r]` on every rank (`arrays.count == size`).
    func allGather(_ array: NDArray, _ arrays: [NDArray]) throws
    /// Returns once every rank has called it.
    func barrier() throws

    /// Starts summing `values` over the ranks in place and returns at once (a gradient bucket during backward);
    /// the values must stay untouched until `finishAllReduces`.
    func startAllReduce(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Lets the reductions started make progress (called between backward steps).
    func progressAllReduces() throws
    /// Waits for every reduction started.
    func finishAllReduces() throws
    /// Whether `flag` is true on any rank: every rank gets the same answer (the loss-scaling overflow check).
    func anyRank(_ flag: Bool) throws -> Bool
}

/// What a communicator that reduces only synchronously does.
extension Communicator {
    public var rank: Int { 0 }
    public var localRank: Int { 0 }
    public var size: Int { 1 }
    public func bcast(_ arrays: [NDArray], src: Int) throws {
        guard src == 0 else { throw KilnError.invalidData("bcast from rank \(src) in a world of one") }
    }
    public func allGather(_ array: NDArray, _ arrays: [NDArray]) throws {
        guard arrays.count == 1 else {
            throw KilnError.invalidData("allGather into \(arrays.count) arrays in a world of one")
        }
        try arrays[0].copy(from: array)
    }
    public func barrier() throws {}
    public func startAllReduce(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = values.baseAddress else { return }
        let view = NDArray(viewing: UnsafeMutableRawPointer(base), type: TensorType([values.count], .float32),
                           owner: ValuesOwner.shared)
        try allReduce([view], division: false, inplace: true)
    }
    public func progressAllReduces() throws {}
    public func finishAllReduces() throws {}
    public func anyRank(_ flag: Bool) throws -> Bool { flag }

    /// Copies each array of rank 0 into every other rank (nnabla's `bcast` default source).
    public func bcast(_ arrays: [NDArray]) throws { try bcast(arrays, src: 0) }
}

/// The owner named by views over memory someone else keeps alive for the duration of a call.
private final class ValuesOwner: Sendable {
    static let shared = ValuesOwner()
}

/// The world of one process: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws {}
}

/// Reduces a training plan's gradient buckets as backward finishes them (`Executable.run(buckets:)`).
public final class OverlappedBucketReduction: GradientBucketObserver {
    let comm: Communicator
    public init(comm: Communicator) { self.comm = comm }
    public func bucketReady(_ index: Int, _ values: UnsafeMutableBufferPointer<Float>) throws {
        try comm.startAllReduce(values)
    }
    public func backwardStepDone() throws { try comm.progressAllReduces() }
}
