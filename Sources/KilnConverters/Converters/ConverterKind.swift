/// The five converters by their `kiln convert --converter` names.
public enum ConverterKind: String, CaseIterable, Sendable {
    case identity
    case bnLinear = "bn-linear"
    case bnFolded = "bn-folded"
    case fixedPointWeight = "fixed-point-weight"
    case fixedPointActivation = "fixed-point-activation"

    public static var names: [String] { allCases.map(\.rawValue) }
}
