/// Every converter argument in one value, as `kiln convert` takes them; nil means the converter's own
/// (nnabla's) default. `sign`, `n`, `delta` and `quantize` set the activation quantizer and, for
/// fixed-point-weight, both the weight and the bias quantizer; the `...W` / `...B` settings override one of
/// those.
public struct ConverterSettings: Sendable {
    public var blackList: Set<String> = []
    public var innerProdFunctions: [String]? = nil
    public var activationFunctions: [String]? = nil
    /// The name prefix of new parameters and values; nil: each converter's own (`bn-folded`, ...).
    public var name: String? = nil
    public var floor = false
    public var sign: Bool? = nil
    public var n: Int? = nil
    public var delta: Double? = nil
    public var quantize: Bool? = nil
    public var signW: Bool? = nil
    public var nW: Int? = nil
    public var deltaW: QuantizationStep? = nil
    public var quantizeW: Bool? = nil
    public var signB: Bool? = nil
    public var nB: Int? = nil
    public var deltaB: QuantizationStep? = nil
    public var quantizeB: Bool? = nil

    public init() {}

    /// Each converter keeps its own default `name` unless one is given.
    public func converter(_ kind: ConverterKind) -> any GraphConverter {
        switch kind {
        case .identity:
            var c = IdentityConverter(blackList: blackList)
            if let name { c.name = name }
            return c
        case .bnLinear:
            var c = BatchNormalizationLinearConverter(blackList: blackList)
            if let name { c.name = name }
            return c
        case .bnFolded:
            var c = BatchNormalizationFoldedConverter(blackList: blackList, innerProdFunctions: innerProdFunctions)
            if let name { c.name = name }
            return c
        case .fixedPointWeight:
            let d = FixedPointWeightConverter.Arguments()
            let step = delta.map { QuantizationStep.fixed($0) }
            let args = FixedPointWeightConverter.Arguments(
                signW: signW ?? sign ?? d.signW, nW: nW ?? n ?? d.nW, deltaW: deltaW ?? step ?? d.deltaW,
                quantizeW: quantizeW ?? quantize ?? d.quantizeW,
                signB: signB ?? sign ?? d.signB, nB: nB ?? n ?? d.nB, deltaB: deltaB ?? step ?? d.deltaB,
                quantizeB: quantizeB ?? quantize ?? d.quantizeB)
            var c = FixedPointWeightConverter(blackList: blackList, innerProdFunctions: innerProdFunctions, floor: floor, argsFpq: args)
            if let name { c.name = name }
            return c
        case .fixedPointActivation:
            let d = FixedPointActivationConverter.Arguments()
            let args = FixedPointActivationConverter.Arguments(sign: sign ?? d.sign, n: n ?? d.n, delta: delta ?? d.delta,
                                                               quantize: quantize ?? d.quantize)
            var c = FixedPointActivationConverter(blackList: blackList, activationFunctions: activationFunctions, argsFpq: args)
            if let name { c.name = name }
            return c
        }
    }

    /// The converters in order, chained when there are several.
    public func converter(_ kinds: [ConverterKind]) -> any GraphConverter {
        kinds.count == 1 ? converter(kinds[0]) : SequentialConverter(kinds.map { converter($0) })
    }
}
