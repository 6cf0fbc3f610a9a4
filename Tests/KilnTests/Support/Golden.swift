import Foundation
@testable import Kiln
@testable import KilnGraph

/// The nnabla 1.39 reference cases of `Fixtures/golden` (copied from shared/golden; see NNABLA-CONVENTIONS.md
/// there for how they were made).
enum Golden {
    struct TensorCase {
        let name: String?
        let shape: [Int]
        let dtype: DType
        let data: [Double]

        /// Values as float32 (the files hold shortest round-trip float32 decimals).
        var floats: [Float] { data.map { Float($0) } }

        func array() throws -> NDArray {
            let a = try NDArray(shape: shape, dtype: dtype)
            if dtype == .int32 { try a.setInt32s(data.map { Int32($0) }) } else { try a.setFloats(floats) }
            return a
        }
    }

    struct FunctionCase: CustomStringConvertible {
        let file: String
        let name: String
        let function: String
        let args: [(String, JSON)]
        let inputs: [TensorCase]
        let differentiable: [Bool]
        let outputs: [TensorCase]
        let outputGrads: [TensorCase]?
        let inputGrads: [TensorCase?]?
        let extra: [String: TensorCase]
        let raw: JSON
        var description: String { name }
    }

    static var directory: URL {
        Bundle.module.bundleURL.appendingPathComponent("Fixtures").appendingPathComponent("golden")
    }

    static func json(_ file: String) throws -> JSON {
        let data = try Data(contentsOf: directory.appendingPathComponent(file + ".json"))
        return try JSON.parse([UInt8](data))
    }

    static func tensor(_ j: JSON?) -> TensorCase? {
        guard let j, let shape = j["shape"]?.array?.compactMap({ $0.int }) else { return nil }
        let dtype: DType = j["dtype"]?.string == "int32" ? .int32 : .float32
        let data = (j["data"]?.array ?? []).map { $0.double ?? 0 }
        return TensorCase(name: j["name"]?.string, shape: shape, dtype: dtype, data: data)
    }

    /// Function cases of one family file (activations, affine, ...).
    static func cases(_ file: String) -> [FunctionCase] {
        guard let obj = try? json(file), let cases = obj["cases"]?.array else { return [] }
        return cases.compactMap { c in
            guard let name = c["name"]?.string, let fn = c["function"]?.string else { return nil }
            let ins = (c["inputs"]?.array ?? []).compactMap { tensor($0) }
            let diff = (c["inputs"]?.array ?? []).map { $0["differentiable"]?.bool ?? false }
            let outs = (c["outputs"]?.array ?? []).compactMap { tensor($0) }
            var og: [TensorCase]? = nil
            var ig: [TensorCase?]? = nil
            if let g = c["grads"], g != .null {
                og = (g["output_grad"]?.array ?? []).compactMap { tensor($0) }
                ig = (g["input_grads"]?.array ?? []).map { tensor($0) }
            }
            var extra: [String: TensorCase] = [:]
            for (k, v) in c["extra_outputs"]?.objectMembers ?? [] { if let t = tensor(v) { extra[k] = t } }
            return FunctionCase(file: file, name: name, function: fn, args: c["args"]?.objectMembers ?? [],
                                inputs: ins, differentiable: diff, outputs: outs, outputGrads: og,
                                inputGrads: ig, extra: extra, raw: c)
        }
    }

    /// nnabla Python function names to graph-file type names.
    static let typeNames: [String: String] = [
        "relu": "ReLU", "leaky_relu": "LeakyReLU", "elu": "ELU", "sigmoid": "Sigmoid", "tanh": "Tanh",
        "softmax": "Softmax", "log_softmax": "LogSoftmax", "identity": "Identity",
        "affine": "Affine", "convolution": "Convolution", "deconvolution": "Deconvolution",
        "add2": "Add2", "sub2": "Sub2", "mul2": "Mul2", "div2": "Div2", "add_scalar": "AddScalar",
        "mul_scalar": "MulScalar", "pow_scalar": "PowScalar", "batch_normalization": "BatchNormalization",
        "embed": "Embed", "softmax_cross_entropy": "SoftmaxCrossEntropy",
        "categorical_cross_entropy": "CategoricalCrossEntropy", "sigmoid_cross_entropy": "SigmoidCrossEntropy",
        "squared_error": "SquaredError", "top_n_error": "TopNError", "binary_error": "BinaryError",
        "max_pooling": "MaxPooling", "average_pooling": "AveragePooling",
        "global_average_pooling": "GlobalAveragePooling", "fixed_point_quantize": "FixedPointQuantize",
        "pow2_quantize": "Pow2Quantize", "sum": "Sum", "mean": "Mean", "reshape": "Reshape",
        "transpose": "Transpose", "concatenate": "Concatenate", "split": "Split", "slice": "Slice",
    ]

    /// The case's Python arguments as graph-file arguments (functions.yaml names).
    static func graphArguments(_ c: FunctionCase) -> [String: ArgValue] {
        var out: [String: ArgValue] = [:]
        for (k, v) in c.args {
            var key = k
            if c.function == "sum" || c.function == "mean" {
                if k == "axis" { key = "axes" }
                if k == "keepdims" { key = "keep_dims" }
            }
            // The golden args are all numbers, booleans, strings or lists of numbers, as in graph files.
            out[key] = try? GraphFile.argValue(v, function: c.name, type: c.function, arg: k)
        }
        if c.function == "batch_normalization" && c.inputs.count == 3 {
            // `F.batch_normalization(x, None, None, ...)` is the graph function with no_bias/no_scale.
            out["no_bias"] = .bool(true)
            out["no_scale"] = .bool(true)
        }
        return out
    }

    static func function(_ c: FunctionCase) throws -> any Function {
        guard let t = typeNames[c.function] else {
            throw KilnError.invalidFunction(function: c.function, reason: "no graph type name")
        }
        return try FunctionRegistry.make(type: t, arguments: graphArguments(c))
    }
}
