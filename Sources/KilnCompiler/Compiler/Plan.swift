import KilnCore

/// A compiled network: a flat schedule of kernel steps over buffers whose places are all decided.
///
/// A `Plan` is a value: it says what runs and where every byte lives, and it is what dumps, `verify()` and
/// `kiln plan` show. An `Executable` binds it to memory and kernels.
public struct Plan: Sendable {
    public var mode: PlanMode
    public var options: CompileOptions
    public var buffers: [PlanBuffer]
    public var steps: [PlanStep]
    /// Steps `0..<forwardStepCount` are the forward phase; the rest are backward.
    public var forwardStepCount: Int
    /// Bytes of the one arena holding every transient buffer.
    public var arenaBytes: Int
    /// The largest total of transient bytes alive at one step of this schedule: no placement can do better.
    public var lowerBoundBytes: Int
    /// Every transient buffer with its own allocation (what `clear_buffer=False` costs).
    public var naiveBytes: Int
    /// Bytes that live outside the arena: inputs, parameters and their gradients, requested outputs.
    public var persistentBytes: Int
    /// The placement algorithm whose layout was kept.
    public var placementAlgorithm: String
    /// In-place decisions: buffer -> the buffer whose memory it takes over (the representative of its group).
    public var aliases: [Int: Int] = [:]
    /// When each transient buffer is alive (`Liveness`), as the memory passes planned it: what placement,
    /// dumps, pictures and executables read. `verify()` derives them again and checks they agree.
    public internal(set) var lifetimes: [BufferLifetime] = []
    /// Threads the plan was compiled for (its context's): convolution workspaces hold one slice per thread,
    /// and an executable runs the plan on this many threads.
    public var threads = 1
    /// Distributed training plans (`CompileOptions.gradientBucketBytes`): the parameter gradients grouped
    /// into contiguous buckets, each ready for an all-reduce after one backward step. Empty otherwise.
    public var gradientBuckets: [GradientBucket] = []
    /// What the compiler decided against and why (a quantized layer left in float32, ...), for dumps and `kiln plan`.
    public var notes: [String] = []

    public static let alignment = 64

    /// Steps that rebuild a forward value in backward (`Recompute`).
    public var recomputeStepCount: Int { steps.reduce(0) { $0 + ($1.kind == .recompute ? 1 : 0) } }
}

/// Parameter gradients laid out back to back in one region of memory, so that one collective call covers
/// them all (`GradientBuckets`).
public struct GradientBucket: Hashable, Sendable {
    /// The gradient buffers, in the order they sit in the bucket.
    public var buffers: [Int]
    /// Byte offset of each buffer from the bucket's start (each a multiple of `Plan.alignment`).
    public var offsets: [Int]
    /// Bytes of the bucket (its gradients and the padding between them; padding stays zero).
    public var bytes: Int
    /// Byte offset of the bucket in the region holding every bucket.
    public var offset: Int
    /// The step after which every gradient in the bucket is final: its all-reduce may start there.
    public var readyAfterStep: Int
}

/// Where a buffer's bytes come from.
public enum BufferKind: String, Sendable, CaseIterable {
    /// Leaf values the user feeds (no gradient).
    case input
    /// Leaf values that need a gradient (parameters).
    case parameter
    /// Gradients of parameters, accumulated in place like nnabla's `.g`.
    case parameterGradient = "parameter-gradient"
    /// Requested outputs and persistent variables: kept in the variable's own storage.
    case output
    /// Gradients of requested outputs (the seed of backward).
    case outputGradient = "output-gradient"
    /// Intermediate values in the arena.
    case activation
    /// Intermediate gradients in the arena.
    case gradient
    /// Kernel scratch memory (im2col columns), alive during one step.
    case workspace

    /// Whether buffers of this kind live in the arena.
    public var isTransient: Bool { self == .activation || self == .gradient || self == .workspace }
}

public struct PlanBuffer: Hashable, Sendable {
    public var id: Int
    public var name: String
    public var kind: BufferKind
    public var type: TensorType
    /// Size rounded up to `Plan.alignment`.
    public var bytes: Int
    /// Offset in the arena; nil for buffers outside it.
    public var offset: Int?
    /// Quantized plans: the float value is held as 8-bit codes of this grid (`Quantization`).
    public var codes: QuantizedCodes? = nil
    /// Inference plans: the value's planes are stored with a border of zeros for the convolutions that read it
    /// (`Layout`); nil is nnabla's dense layout.
    public var layout: PaddedPlanes? = nil

    /// Bytes the value occupies as stored (before rounding up to the alignment).
    public var storedByteCount: Int {
        if let layout, type.rank == 4 { return layout.floats(planes: type.shape[0] * type.shape[1]) * 4 }
        return codes == nil ? type.byteCount : type.count
    }
}

public enum StepKind: String, Sendable {
    case forward, backward
    /// Fills the gradient of a root with the backward seed (1 unless given).
    case seed
    /// Zeroes a gradient that no consumer produced but a backward step reads.
    case zero
    /// Runs a forward function again in the backward phase, so that its output need not be kept from
    /// forward (`Recompute`).
    case recompute

    /// Whether the step runs a function's kernel (rather than filling a gradient).
    public var runsFunction: Bool { self == .forward || self == .backward || self == .recompute }
}

public struct PlanStep: Hashable, Sendable {
    public var kind: StepKind
    /// nnabla function type ("Convolution"), or "Seed" / "Zero".
    public var function: String
    /// The function node's name in the graph.
    public var node: String
    /// Buffers read.
    public var inputs: [Int]
    /// Buffers written.
    public var outputs: [Int]
    /// Per output: added to (true) rather than overwritten.
    public var accumulate: [Bool]
    /// Scratch buffer of the step, if any.
    public var workspace: Int?
    /// Half-precision plans: the float32 buffer where the step's float16 values are widened for the kernel
    /// (alive during this step only), and where each of them sits in it.
    public var staging: Int? = nil
    public var staged: [StagedValue] = []
    /// Half-precision plans: float32 buffers the step writes whose values are rounded to float16 after it.
    public var rounded: [Int] = []

    /// Every buffer the step touches: what liveness and verification look at.
    public var touched: [Int] {
        var ids = inputs + outputs
        if let w = workspace { ids.append(w) }
        if let s = staging { ids.append(s) }
        return ids
    }
}

/// A float16 buffer a step's kernel sees as float32 at `offset` bytes into the step's staging buffer.
public struct StagedValue: Hashable, Sendable {
    public var buffer: Int
    public var offset: Int
    /// Widened into the staging buffer before the kernel runs (it is read, or added to).
    public var load: Bool
    /// Narrowed back into the arena after the kernel ran (it is written).
    public var store: Bool
}
