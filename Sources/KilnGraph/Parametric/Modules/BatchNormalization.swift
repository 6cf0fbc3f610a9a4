import KilnCore

public extension Module {
    /// nnabla's parametric function class `BatchNormalization` over one channel axis.
    ///
    /// Parameters `beta` (0), `gamma` (1), `mean` (0) and `var` (1), created in that order, each of rank `nDims`
    /// with `nFeatures` at `axes[0]` and 1 elsewhere (e.g. `(1, C, 1, 1)`). `mean` and `var` are the running
    /// statistics: they never need a gradient (so `getParameters()` leaves them out, `getParameters(gradOnly:
    /// false)` has them) and a training forward updates them in place. `fixParameters` fixes beta and gamma.
    ///
    /// `batchStat` chooses training (batch statistics, running statistics updated) or evaluation (running
    /// statistics) and can be flipped at any time (`bn.batchStat = false` before building an evaluation graph);
    /// `bn(x, test: true)` is nnabla's `__call__(inp, test=True)`. Differences from nnabla 1.39's class: its
    /// `__call__` ignores the `batch_stat` given to the constructor (it uses `not test`), and its `BatchNorm1d/2d/
    /// 3d` ignore `eps` (they pass 1e-5); Kiln honours both.
    ///
    /// `noScale` and `noBias` (nnabla's `PF.batch_normalization` arguments) leave gamma or beta out of the
    /// parameters: the normalisation then uses a constant 1 or 0 in their place, as nnabla's `None` does.
    class BatchNormalization: Module {
        public var beta: Variable
        public var gamma: Variable
        public var mean: Variable
        public var `var`: Variable
        public let nFeatures: Int
        public let nDims: Int
        public let axes: [Int]
        public var decayRate: Double
        public var eps: Double
        /// Training (batch statistics) when true, evaluation (running statistics) when false.
        public var batchStat: Bool
        /// nnabla's `output_stat`: the batch mean and variance are outputs too; read them with `callWithStats`.
        public var outputStat: Bool
        /// No learnt scale (gamma is a constant 1, not a parameter) or shift (beta a constant 0).
        public let noScale: Bool
        public let noBias: Bool

        public init(nFeatures: Int, nDims: Int, axes: [Int] = [1], decayRate: Double = 0.9, eps: Double = 1e-5,
                    batchStat: Bool = true, outputStat: Bool = false, fixParameters: Bool = false,
                    paramInit: [String: Initializer]? = nil, noScale: Bool = false, noBias: Bool = false) throws {
            let module = String(describing: Self.self)
            try Module.require(nFeatures > 0, module, "n_features must be positive, got \(nFeatures)")
            try Module.require(nDims >= 2, module, "n_dims must be at least 2, got \(nDims)")
            try Module.require(axes.count == 1, module, "axes \(axes) must name exactly one channel axis")
            try Module.require(axes[0] >= 0 && axes[0] < nDims, module, "axis \(axes[0]) is out of range for \(nDims) dims")
            try Module.require(decayRate.isFinite && eps.isFinite && eps >= 0, module,
                               "decay_rate \(decayRate) and eps \(eps) must be finite, eps >= 0")
            let inits = paramInit ?? [:]
            let known: Set<String> = ["beta", "gamma", "mean", "var"]
            for key in inits.keys.sorted() where !known.contains(key) {
                throw KilnError.invalidFunction(function: module, reason: "param_init key '\(key)' must be one of beta, gamma, mean, var")
            }
            var shape = [Int](repeating: 1, count: nDims)
            shape[axes[0]] = nFeatures
            // Left out, beta and gamma are constants outside the parameters (what nnabla's None stands for).
            func constant(_ value: Float, _ name: String) throws -> Variable {
                let v = try Variable(shape: shape, name: name)
                try v.setData([Float](repeating: value, count: v.size))
                return v
            }
            beta = noBias ? try constant(0, "beta (no_bias)")
                : try Module.parameter("beta", shape: shape, initializer: inits["beta"] ?? .constant(0), needGrad: !fixParameters, rng: nil)
            gamma = noScale ? try constant(1, "gamma (no_scale)")
                : try Module.parameter("gamma", shape: shape, initializer: inits["gamma"] ?? .constant(1), needGrad: !fixParameters, rng: nil)
            mean = try Module.parameter("mean", shape: shape, initializer: inits["mean"] ?? .constant(0),
                                        needGrad: false, rng: nil)
            `var` = try Module.parameter("var", shape: shape, initializer: inits["var"] ?? .constant(1),
                                         needGrad: false, rng: nil)
            self.nFeatures = nFeatures
            self.nDims = nDims
            self.axes = axes
            self.decayRate = decayRate
            self.eps = eps
            self.batchStat = batchStat
            self.outputStat = outputStat
            self.noScale = noScale
            self.noBias = noBias
            try super.init()
            if noScale { constantVariables.insert(ObjectIdentifier(gamma)) }
            if noBias { constantVariables.insert(ObjectIdentifier(beta)) }
        }

        /// The normalised output, with batch statistics when `batchStat` is true, running ones otherwise.
        public override func call(_ x: Variable) throws -> Variable {
            try apply(x, batchStat: batchStat)
        }

        /// nnabla's `__call__(inp, test)`: running statistics when `test`, batch statistics otherwise, whatever
        /// `batchStat` says.
        public func callAsFunction(_ x: Variable, test: Bool) throws -> Variable {
            try apply(x, batchStat: !test)
        }

        /// nnabla's `output_stat=True` result `[y, batch_mean, batch_var]`. Batch statistics exist only in
        /// training mode: throws when `batchStat` is false.
        public func callWithStats(_ x: Variable) throws -> [Variable] {
            try checkInput(x)
            try Module.require(batchStat, String(describing: type(of: self)),
                               "output_stat needs batch_stat=true (batch statistics exist only in training mode)")
            return try F.batchNormalizationWithStats(x, beta, gamma, mean, `var`, axes: axes, decayRate: decayRate, eps: eps)
        }

        private func apply(_ x: Variable, batchStat: Bool) throws -> Variable {
            try checkInput(x)
            return try F.batchNormalization(x, beta, gamma, mean, `var`, axes: axes, decayRate: decayRate, eps: eps,
                                            batchStat: batchStat, outputStat: outputStat && batchStat)
        }

        private func checkInput(_ x: Variable) throws {
            let module = String(describing: type(of: self))
            try Module.require(x.ndim == nDims, module, "input \(x.shape) must have \(nDims) dims")
            try Module.require(x.shape[axes[0]] == nFeatures, module,
                               "input \(x.shape) has \(x.shape[axes[0]]) features on axis \(axes[0]), the module was built for \(nFeatures)")
        }
    }

    /// Batch normalisation of 3-D inputs `(N, C, L)` (typically after `Conv1d`).
    final class BatchNorm1d: BatchNormalization {
        public init(nFeatures: Int, axes: [Int] = [1], decayRate: Double = 0.9, eps: Double = 1e-5,
                    batchStat: Bool = true, outputStat: Bool = false, fixParameters: Bool = false,
                    paramInit: [String: Initializer]? = nil, noScale: Bool = false, noBias: Bool = false) throws {
            try super.init(nFeatures: nFeatures, nDims: 3, axes: axes, decayRate: decayRate, eps: eps, batchStat: batchStat,
                           outputStat: outputStat, fixParameters: fixParameters, paramInit: paramInit, noScale: noScale, noBias: noBias)
        }
    }

    /// Batch normalisation of 4-D inputs `(N, C, H, W)` (typically after `Conv2d`).
    final class BatchNorm2d: BatchNormalization {
        public init(nFeatures: Int, axes: [Int] = [1], decayRate: Double = 0.9, eps: Double = 1e-5,
                    batchStat: Bool = true, outputStat: Bool = false, fixParameters: Bool = false,
                    paramInit: [String: Initializer]? = nil, noScale: Bool = false, noBias: Bool = false) throws {
            try super.init(nFeatures: nFeatures, nDims: 4, axes: axes, decayRate: decayRate, eps: eps, batchStat: batchStat,
                           outputStat: outputStat, fixParameters: fixParameters, paramInit: paramInit, noScale: noScale, noBias: noBias)
        }
    }

    /// Batch normalisation of 5-D inputs `(N, C, D, H, W)` (typically after `Conv3d`).
    final class BatchNorm3d: BatchNormalization {
        public init(nFeatures: Int, axes: [Int] = [1], decayRate: Double = 0.9, eps: Double = 1e-5,
                    batchStat: Bool = true, outputStat: Bool = false, fixParameters: Bool = false,
                    paramInit: [String: Initializer]? = nil, noScale: Bool = false, noBias: Bool = false) throws {
            try super.init(nFeatures: nFeatures, nDims: 5, axes: axes, decayRate: decayRate, eps: eps, batchStat: batchStat,
                           outputStat: outputStat, fixParameters: fixParameters, paramInit: paramInit, noScale: noScale, noBias: noBias)
        }
    }
}
