import KilnGraph

/// What a plan computes.
public enum PlanMode: String, Sendable, CaseIterable, Codable {
    /// Forward only.
    case inference
    /// Forward, then backward from the roots to every variable that needs a gradient.
    case training
}

/// How a plan uses memory. The defaults are what a trainer wants; `Variable.forward()` passes nnabla's own
/// defaults (`clear_buffer=False`, `clear_no_need_grad=False`).
public struct CompileOptions: Hashable, Sendable {
    /// Reuse the memory of a buffer after its last use (nnabla's `clear_buffer`). Off: every buffer keeps its
    /// own place for the whole run, so every intermediate value can be read afterwards.
    public var clearBuffer: Bool
    /// In training plans, free forward values that backward does not read as soon as forward is done with
    /// them (nnabla's `clear_no_need_grad`). Off: every forward value survives until the forward phase ends.
    public var clearNoNeedGrad: Bool

    /// In inference plans with clear_buffer on, run a convolution and the test-mode BatchNormalization and
    /// ReLU after it as one step (see `Fusion`); in float32 training plans with clear_buffer and
    /// clear_no_need_grad on, a training-mode BatchNormalization, residual Add2 and ReLU, forward and backward
    /// (see `TrainingFusion`). Off: every function is its own step.
    public var fusion: Bool

    /// In inference plans with fusion, run convolutions and affines whose input and weight are
    /// fixed-point-quantized on integer kernels, and keep the quantizers' outputs as 8-bit codes where every
    /// reader takes codes (see `Quantization`). Off: they run in float32 as the graph says.
    public var integerKernels = true

    /// In inference plans with fusion, store a convolution's output in the padded planes its readers' direct
    /// kernel reads, border included, where every reader takes them (see `Layout`). Off (the default): every value
    /// keeps nnabla's dense layout and each convolution pads its own copy of every sample, one at a time. Off by
    /// default because it measured no faster (slower at batch 1) where it was measured (docs/ARCHITECTURE.md, "Layouts").
    public var layouts = false

    /// How transient values (activations and their gradients) are stored in the arena. Kernels always
    /// compute in float32; see `HalfStorage`.
    public var precision: Precision

    /// In training plans with clear_buffer on, rebuild values that are one cheap pass (BatchNormalization,
    /// Add2, ReLU) away from values backward keeps anyway, in backward, rather than keep them from forward
    /// (see `Recompute`). Costs a second run of those passes; results are the same bit for bit. Off: every
    /// value backward reads is kept from forward, as nnabla does.
    public var recompute: Bool

    /// Training plans for distributed data parallelism: lay the parameter gradients out contiguously in
    /// buckets of at most this many bytes (a gradient larger than that is a bucket of its own), in the order
    /// backward finishes them, so that each bucket can be all-reduced as soon as its last gradient is
    /// written (see `GradientBuckets`). nil: every gradient keeps its own array, no buckets.
    public var gradientBucketBytes: Int? = nil

    /// Half precision: store every activation and gradient as float16, even where rounding a float32 value
    /// costs less memory (see `HalfStorage`). For tests: results must be the same either way.
    var halfStorageEverywhere = false

    public init(clearBuffer: Bool = true, clearNoNeedGrad: Bool = true, fusion: Bool = true,
                precision: Precision = .float, recompute: Bool = true) {
        self.clearBuffer = clearBuffer
        self.clearNoNeedGrad = clearNoNeedGrad
        self.fusion = fusion
        self.precision = precision
        self.recompute = recompute
    }
}

/// The calls of nnabla's API that compile a plan, with the flags each takes.
public enum NnablaCall: Hashable, Sendable {
    /// `Variable.forward(clear_buffer:, clear_no_need_grad:)`.
    case forward(clearBuffer: Bool, clearNoNeedGrad: Bool)
    /// An updater's training step (`Updater`, `DynamicLossScalingUpdater`): `clear_buffer` for both phases.
    case update(clearBuffer: Bool)
    /// An evaluator's forward (`Evaluator`): `clear_buffer`.
    case evaluate(clearBuffer: Bool)
}

extension CompileOptions {
    /// nnabla's flags resolved into a mode and options: the one place they are mapped.
    ///
    /// - `forward(clear_buffer=True)`: an inference plan that frees each value after its last use.
    /// - `forward(clear_no_need_grad=True)`: the forward phase of a memory-lean training plan (what backward
    ///   does not read is freed); nothing is rebuilt, so what backward reads stays readable, as in nnabla.
    /// - `forward()`: nnabla's defaults, every buffer kept (a training plan, so `backward` can follow).
    /// - an update: a training plan freeing values with `clear_buffer`, rebuilding cheap ones when
    ///   `recompute` allows.
    /// - an evaluation: an inference plan freeing values with `clear_buffer`.
    ///
    /// `precision` is the caller's storage precision (an updater's own; otherwise the context's).
    public static func resolved(_ call: NnablaCall, precision: Precision,
                                recompute: Bool = true) -> (mode: PlanMode, options: CompileOptions) {
        switch call {
        case .forward(clearBuffer: true, _):
            return (.inference, CompileOptions(clearBuffer: true, clearNoNeedGrad: true, precision: precision))
        case .forward(clearBuffer: false, clearNoNeedGrad: true):
            return (.training, CompileOptions(clearBuffer: true, clearNoNeedGrad: true, precision: precision,
                                              recompute: false))
        case .forward(clearBuffer: false, clearNoNeedGrad: false):
            return (.training, CompileOptions(clearBuffer: false, clearNoNeedGrad: false, precision: precision))
        case .update(let clearBuffer):
            return (.training, CompileOptions(clearBuffer: clearBuffer, clearNoNeedGrad: clearBuffer,
                                              precision: precision, recompute: recompute))
        case .evaluate(let clearBuffer):
            return (.inference, CompileOptions(clearBuffer: clearBuffer, clearNoNeedGrad: true, precision: precision))
        }
    }
}
