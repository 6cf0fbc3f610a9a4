import ArgumentParser
import Foundation
import Kiln

extension ConverterKind: ExpressibleByArgument {}

extension QuantizationStep: ExpressibleByArgument {
    /// A positive number, or `pow2` for nnabla's power-of-two step derived from the parameter.
    public init?(argument: String) {
        if argument == "pow2" { self = .powerOfTwo; return }
        guard let d = Double(argument), d > 0, Float(d).isFinite, Float(d) > 0 else { return nil }
        self = .fixed(d)
    }
}

/// `kiln convert GRAPH --converter NAME -o OUT`: nnabla's graph converters on a graph file.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a graph file (kiln-graph/1 or ONNX) with one of nnabla's graph converters (several run in order).",
        discussion: """
        identity: the same graph. bn-linear: each test-mode BatchNormalization becomes c0*x + c1. bn-folded: \
        each test-mode BatchNormalization right after an Affine/Convolution/Deconvolution whose output it alone \
        reads is folded into that layer's weight and bias. fixed-point-weight: the weights and biases of \
        those layers are read through FixedPointQuantize (signed, 8 bits, delta 2e-4 by default). \
        fixed-point-activation: each ReLU becomes FixedPointQuantize (unsigned, 8 bits, delta 2e-4). What a \
        converter leaves as it is (a training-mode BN, a branch) is reported on standard error.
        """)

    @Argument(help: "The graph file to convert: kiln-graph/1 JSON (.json), ONNX (.onnx) or nnabla (.nnp).") var graph: String
    @Option(name: .customLong("converter"), help: "The converter. Repeat to chain converters in order (e.g. fixed-point-weight, then fixed-point-activation).")
    var converters: [ConverterKind] = []
    @Option(name: .shortAndLong, help: "Where to write the converted graph (kiln-graph/1, parameters with their data).")
    var output: String

    @Option(name: .customLong("black-list"), help: "A function type to leave as it is (repeatable).")
    var blackList: [String] = []
    @Option(name: .customLong("inner-prod-function"), help: "bn-folded, fixed-point-weight: a layer type to convert, replacing the default Affine, Convolution, Deconvolution (repeatable).")
    var innerProdFunctions: [String] = []
    @Option(name: .customLong("activation-function"), help: "fixed-point-activation: a function type to replace, replacing the default ReLU (repeatable).")
    var activationFunctions: [String] = []
    @Option(help: "The name prefix of new parameters and values (default: the converter's name, e.g. bn-folded).")
    var name: String?

    @Option(parsing: .unconditional, help: "fixed-point-*: the quantization step (activation default 2e-4; for fixed-point-weight both --delta-w and --delta-b).")
    var delta: Double?
    @Option(parsing: .unconditional, help: "fixed-point-*: the bit width (default 8; for fixed-point-weight both --n-w and --n-b).")
    var n: Int?
    @Flag(inversion: .prefixedNo, help: "fixed-point-*: signed quantization (default: signed weights, unsigned activations).")
    var sign: Bool?
    @Flag(inversion: .prefixedNo, help: "fixed-point-*: quantize at all (default on).")
    var quantize: Bool?
    @Option(name: .customLong("delta-w"), parsing: .unconditional, help: "fixed-point-weight: the weight step, a number or pow2 (default 2e-4).")
    var deltaW: QuantizationStep?
    @Option(name: .customLong("n-w"), parsing: .unconditional, help: "fixed-point-weight: the weight bit width (default 8).")
    var nW: Int?
    @Flag(name: .customLong("sign-w"), inversion: .prefixedNo, help: "fixed-point-weight: signed weights (default on).")
    var signW: Bool?
    @Flag(name: .customLong("quantize-w"), inversion: .prefixedNo, help: "fixed-point-weight: quantize weights (default on).")
    var quantizeW: Bool?
    @Option(name: .customLong("delta-b"), parsing: .unconditional, help: "fixed-point-weight: the bias step, a number or pow2 (default 2e-4).")
    var deltaB: QuantizationStep?
    @Option(name: .customLong("n-b"), parsing: .unconditional, help: "fixed-point-weight: the bias bit width (default 8).")
    var nB: Int?
    @Flag(name: .customLong("sign-b"), inversion: .prefixedNo, help: "fixed-point-weight: signed biases (default on).")
    var signB: Bool?
    @Flag(name: .customLong("quantize-b"), inversion: .prefixedNo, help: "fixed-point-weight: quantize biases (default on).")
    var quantizeB: Bool?
    @Flag(help: "fixed-point-weight with pow2 steps: round log2 down (a finer step that clips the largest values) instead of up.")
    var floor = false
    @Flag(name: .customLong("allow-non-finite"), help: "Load parameters holding NaN or infinity (refused by default).")
    var allowNonFinite = false
    @OptionGroup var params: ParametersOption
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        guard !converters.isEmpty else {
            throw ValidationError("--converter is required: one of \(ConverterKind.names.joined(separator: ", "))")
        }
        let known = Set(FunctionRegistry.typeNames)
        for (flag, types) in [("--black-list", blackList), ("--inner-prod-function", innerProdFunctions),
                              ("--activation-function", activationFunctions)] {
            for t in types where !known.contains(t) {
                throw ValidationError("\(flag) \(t): unknown function type (known: \(known.sorted().joined(separator: ", ")))")
            }
        }
        for (flag, v) in [("--n", n), ("--n-w", nW), ("--n-b", nB)] {
            if let v, !(1...32).contains(v) { throw ValidationError("\(flag) must be between 1 and 32, got \(v)") }
        }
        if let d = delta, !(d > 0 && Float(d).isFinite && Float(d) > 0) {
            throw ValidationError("--delta must be a positive float32 number, got \(d)")
        }
        if let name, name.isEmpty { throw ValidationError("--name must not be empty") }
        // A flag no chosen converter reads is a mistake worth saying (a typo'd converter, a flag for another).
        let uses: [(String, Bool, Set<ConverterKind>)] = [
            ("--inner-prod-function", !innerProdFunctions.isEmpty, [.bnFolded, .fixedPointWeight]),
            ("--activation-function", !activationFunctions.isEmpty, [.fixedPointActivation]),
            ("--delta", delta != nil, [.fixedPointWeight, .fixedPointActivation]),
            ("--n", n != nil, [.fixedPointWeight, .fixedPointActivation]),
            ("--sign/--no-sign", sign != nil, [.fixedPointWeight, .fixedPointActivation]),
            ("--quantize/--no-quantize", quantize != nil, [.fixedPointWeight, .fixedPointActivation]),
            ("--delta-w", deltaW != nil, [.fixedPointWeight]), ("--n-w", nW != nil, [.fixedPointWeight]),
            ("--sign-w/--no-sign-w", signW != nil, [.fixedPointWeight]),
            ("--quantize-w/--no-quantize-w", quantizeW != nil, [.fixedPointWeight]),
            ("--delta-b", deltaB != nil, [.fixedPointWeight]), ("--n-b", nB != nil, [.fixedPointWeight]),
            ("--sign-b/--no-sign-b", signB != nil, [.fixedPointWeight]),
            ("--quantize-b/--no-quantize-b", quantizeB != nil, [.fixedPointWeight]),
            ("--floor", floor, [.fixedPointWeight]),
        ]
        for (flag, given, kinds) in uses where given && kinds.isDisjoint(with: converters) {
            throw ValidationError("\(flag) applies to \(kinds.map(\.rawValue).sorted().joined(separator: " and ")) only, not to \(converters.map(\.rawValue).joined(separator: ", "))")
        }
        // A signed quantizer spends one bit on the sign: one bit leaves none for the value (FixedPointQuantize
        // would reject it only once the conversion runs).
        if converters.contains(.fixedPointWeight) {
            let d = FixedPointWeightConverter.Arguments()
            for (what, flags, signed, bits) in [("weights", "--n-w/--n", signW ?? sign ?? d.signW, nW ?? n ?? d.nW),
                                                ("biases", "--n-b/--n", signB ?? sign ?? d.signB, nB ?? n ?? d.nB)]
            where signed && bits < 2 {
                throw ValidationError("fixed-point-weight: signed \(what) need at least 2 bits (\(flags)), got \(bits)")
            }
        }
        if converters.contains(.fixedPointActivation) {
            let d = FixedPointActivationConverter.Arguments()
            if (sign ?? d.sign) && (n ?? d.n) < 2 {
                throw ValidationError("fixed-point-activation: signed activations need at least 2 bits (--n), got \(n ?? d.n)")
            }
        }
    }

    var settings: ConverterSettings {
        var s = ConverterSettings()
        s.blackList = Set(blackList)
        s.innerProdFunctions = innerProdFunctions.isEmpty ? nil : innerProdFunctions
        s.activationFunctions = activationFunctions.isEmpty ? nil : activationFunctions
        s.name = name
        s.floor = floor
        s.sign = sign
        s.n = n
        s.delta = delta
        s.quantize = quantize
        s.signW = signW
        s.nW = nW
        s.deltaW = deltaW
        s.quantizeW = quantizeW
        s.signB = signB
        s.nB = nB
        s.deltaB = deltaB
        s.quantizeB = quantizeB
        return s
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            let notes = try GraphFileConversion.convert(graph: graph, with: settings.converter(converters), to: output,
                                                            parameters: params.path, allowNonFinite: allowNonFinite)
            for n in notes { FileHandle.standardError.write(Data("kiln: note: \(n)\n".utf8)) }
            print("wrote \(output)")
        }
    }
}
