public extension Module {
    /// nnabla's parametric function class `Embed`: rows of W `(nInputs, nFeatures)` picked by int32 indices.
    ///
    /// W ~ U(-sqrt(3), sqrt(3)) from the global generator (as `PF.embed`; nnabla's initialiser takes no `rng`
    /// here). nnabla 1.39's class cannot be constructed (it refers to an undefined `n_input`); Kiln implements
    /// the documented behaviour.
    final class Embed: Module {
        public var W: Variable
        public let nInputs: Int
        public let nFeatures: Int

        public init(nInputs: Int, nFeatures: Int, wInit: Initializer? = nil, fixParameters: Bool = false) throws {
            try Module.require(nInputs > 0, "Embed", "n_inputs must be positive, got \(nInputs)")
            try Module.require(nFeatures > 0, "Embed", "n_features must be positive, got \(nFeatures)")
            W = try Module.parameter("W", shape: [nInputs, nFeatures],
                                     initializer: wInit ?? .uniform(low: -3.0.squareRoot(), high: 3.0.squareRoot()),
                                     needGrad: !fixParameters, rng: nil)
            self.nInputs = nInputs
            self.nFeatures = nFeatures
            try super.init()
        }

        public override func call(_ x: Variable) throws -> Variable {
            try F.embed(x, W)
        }
    }
}
