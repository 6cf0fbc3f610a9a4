import KilnCore

public extension Module {
    /// nnabla's parametric function class `Affine` (alias `Linear`): `y = x W + b` over the dimensions from
    /// `baseAxis` on.
    ///
    /// As in nnabla's class (and unlike `PF.affine`), W is `(nInMaps, prod(nOutMaps))` and b is
    /// `(prod(nOutMaps),)`: the output is `x.shape[..<baseAxis] + [prod(nOutMaps)]`. The initial values are
    /// PF's: W ~ U(-d, d) with `d = sqrt(6 / (nInMaps + prod(nOutMaps)))` drawn first, then b (zeros), both from
    /// `rng` or the global generator, so `Affine` and `PF.affine` with the same generator state hold the same
    /// numbers.
    final class Affine: Module {
        public var W: Variable
        public var b: Variable?
        public var baseAxis: Int

        public init(nInMaps: Int, nOutMaps: [Int], baseAxis: Int = 1, wInit: Initializer? = nil,
                    bInit: Initializer? = nil, fixParameters: Bool = false, rng: NumpyRandom? = nil,
                    withBias: Bool = true) throws {
            try Module.require(nInMaps > 0, "Affine", "n_inmaps must be positive, got \(nInMaps)")
            try Module.require(!nOutMaps.isEmpty && nOutMaps.allSatisfy { $0 > 0 }, "Affine",
                               "n_outmaps must be positive, got \(nOutMaps)")
            try Module.require(baseAxis >= 0, "Affine", "base_axis must be >= 0, got \(baseAxis)")
            let outmaps = try Shapes.count(nOutMaps)
            W = try Module.parameter("W", shape: [nInMaps, outmaps],
                                     initializer: wInit ?? .glorotUniform(inmaps: nInMaps, outmaps: outmaps),
                                     needGrad: !fixParameters, rng: rng)
            b = withBias ? try Module.parameter("b", shape: [outmaps], initializer: bInit ?? .constant(0),
                                                needGrad: !fixParameters, rng: rng) : nil
            self.baseAxis = baseAxis
            try super.init()
        }

        public convenience init(nInMaps: Int, nOutMaps: Int, baseAxis: Int = 1, wInit: Initializer? = nil,
                                bInit: Initializer? = nil, fixParameters: Bool = false, rng: NumpyRandom? = nil,
                                withBias: Bool = true) throws {
            try self.init(nInMaps: nInMaps, nOutMaps: [nOutMaps], baseAxis: baseAxis, wInit: wInit, bInit: bInit,
                          fixParameters: fixParameters, rng: rng, withBias: withBias)
        }

        public override func call(_ x: Variable) throws -> Variable {
            try Module.require(baseAxis <= x.ndim, "Affine", "base_axis \(baseAxis) is out of range for input \(x.shape)")
            let inner = Shapes.product(x.shape, baseAxis..<x.ndim)
            try Module.require(W.ndim >= 1 && inner == W.shape[0], "Affine",
                               "input \(x.shape) has \(inner) values per sample after base_axis \(baseAxis), W \(W.shape) expects \(W.shape.first ?? 0)")
            return try F.affine(x, W, b, baseAxis: baseAxis)
        }
    }

    /// nnabla's `Linear`, an alias of `Affine`.
    typealias Linear = Affine
}
