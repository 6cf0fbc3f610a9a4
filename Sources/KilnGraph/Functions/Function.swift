import KilnCore

/// One of nnabla's functions with its arguments fixed: the unit a graph is made of.
///
/// A function knows three things: the types of its outputs given its inputs (checked when it is added to a
/// graph), how to build a forward kernel over bound buffers, and how to build the backward kernel that turns
/// output gradients into input gradients. Kernels are built once when a plan is bound; running them must not
/// allocate.
public protocol Function: SendableMetatype {
    /// nnabla's function type name, as used in graph files ("Convolution", "ReLU", ...).
    static var typeName: String { get }

    /// Parses the arguments of a graph file, filling in nnabla's defaults.
    init(arguments: inout ArgReader) throws

    /// Every argument with its resolved value, in nnabla's order, for graph files and dumps.
    var arguments: [(String, ArgValue)] { get }

    /// Output types for the given input types; throws when they are not acceptable.
    func outputTypes(_ inputs: [TensorType]) throws -> [TensorType]

    /// Whether a gradient flows to input `index` (false for labels, indices and statistics in test mode).
    func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool

    /// Which input and output values the backward kernel reads. Anything else may be freed after forward.
    func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool])

    /// Whether some input is written by the forward kernel (BatchNormalization's running statistics).
    func mutatesInput(_ index: Int) -> Bool

    /// Scratch memory (bytes) the forward and backward kernels need; planned like any other buffer.
    func forwardWorkspace(_ b: TypeBinding) -> Int
    func backwardWorkspace(_ b: TypeBinding) -> Int

    /// Whether the function has a backward rule at all (TopNError and BinaryError do not).
    var isDifferentiable: Bool { get }

    /// An input whose buffer forward may overwrite with output 0 (same size), when that input is not needed
    /// afterwards: element-wise kernels that read element i before writing it. nil: never in place.
    var forwardInPlaceInput: Int? { get }

    /// Whether backward may write the gradient of input 0 over the gradient of output 0 (same size), when
    /// the output gradient is not needed afterwards and the input gradient is overwritten, not accumulated.
    var backwardInPlace: Bool { get }

    /// Whether a training plan may run the forward kernel again in backward rather than keep its output
    /// (`CompileOptions.recompute`): one pass over its values, deterministic, reading no state that forward
    /// changes. Its result must be bit for bit what forward computed.
    var isCheapToRecompute: Bool { get }

    func makeForward(_ b: ForwardBinding) throws -> Kernel
    func makeBackward(_ b: BackwardBinding) throws -> Kernel
}

public extension Function {
    var typeName: String { Self.typeName }
    func propagatesGradient(toInput index: Int, inputCount: Int) -> Bool { true }
    func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([Bool](repeating: true, count: inputCount), [Bool](repeating: false, count: outputCount))
    }
    func mutatesInput(_ index: Int) -> Bool { false }
    func forwardWorkspace(_ b: TypeBinding) -> Int { 0 }
    func backwardWorkspace(_ b: TypeBinding) -> Int { 0 }
    var isDifferentiable: Bool { true }
    var forwardInPlaceInput: Int? { nil }
    var backwardInPlace: Bool { false }
    var isCheapToRecompute: Bool { false }

    func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        throw KilnError.invalidFunction(function: Self.typeName, reason: "has no backward")
    }

    /// Shorthand for an error about this function.
    func error(_ reason: String) -> KilnError { .invalidFunction(function: Self.typeName, reason: reason) }
}

/// A kernel bound to its buffers. It may throw for data-dependent errors (a label out of range).
public typealias Kernel = () throws -> Void

/// A buffer bound to a kernel: an address and the type of what lives there.
public struct Tensor {
    public let raw: UnsafeMutableRawPointer
    public let type: TensorType

    public init(_ raw: UnsafeMutableRawPointer, _ type: TensorType) {
        self.raw = raw
        self.type = type
    }

    public var f: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    public var i32: UnsafeMutablePointer<Int32> { raw.assumingMemoryBound(to: Int32.self) }
    public var shape: [Int] { type.shape }
    public var count: Int { type.count }
}

/// Input and output types of one function application, for workspace sizing.
public struct TypeBinding {
    public let inputs: [TensorType]
    public let outputs: [TensorType]

    /// The memberwise initializer, spelled out to be `package` (the compiler sizes workspaces with it).
    package init(inputs: [TensorType], outputs: [TensorType]) {
        self.inputs = inputs
        self.outputs = outputs
    }
}

public struct ForwardBinding {
    public let inputs: [Tensor]
    public let outputs: [Tensor]
    /// Scratch memory of `forwardWorkspace` bytes (nil when that is 0).
    public let workspace: UnsafeMutableRawPointer?
    /// The kernel runs again in backward to recompute its outputs (`Recompute`): it must leave every input
    /// as it is (BatchNormalization does not update its running statistics a second time).
    public var recomputing = false

    /// The memberwise initializer, spelled out to be `package` (the runtime binds kernels with it).
    package init(inputs: [Tensor], outputs: [Tensor], workspace: UnsafeMutableRawPointer?, recomputing: Bool = false) {
        self.inputs = inputs
        self.outputs = outputs
        self.workspace = workspace
        self.recomputing = recomputing
    }
}

public struct BackwardBinding {
    public let inputTypes: [TensorType]
    public let outputTypes: [TensorType]
    /// Input values, present where `backwardReads` asked for them.
    public let inputs: [Tensor?]
    /// Output values, present where `backwardReads` asked for them.
    public let outputs: [Tensor?]
    /// Gradients of every output.
    public let outputGrads: [Tensor]
    /// Where to write input gradients; nil where no gradient is wanted.
    public let inputGrads: [Tensor?]
    /// Per input: add to the gradient buffer (true) or overwrite it (false).
    public let accumulate: [Bool]
    public let workspace: UnsafeMutableRawPointer?

    /// The memberwise initializer, spelled out to be `package` (the runtime binds kernels with it).
    package init(inputTypes: [TensorType], outputTypes: [TensorType], inputs: [Tensor?], outputs: [Tensor?],
                 outputGrads: [Tensor], inputGrads: [Tensor?], accumulate: [Bool], workspace: UnsafeMutableRawPointer?) {
        self.inputTypes = inputTypes
        self.outputTypes = outputTypes
        self.inputs = inputs
        self.outputs = outputs
        self.outputGrads = outputGrads
        self.inputGrads = inputGrads
        self.accumulate = accumulate
        self.workspace = workspace
    }
}
