import Foundation
import Testing
@testable import Kiln

/// ONNX's own backend test data (Debian: libonnx-testdata, which `make test` installs): each test is a model
/// and input/output tensors computed by ONNX's reference. Every test whose operators Kiln imports is run
/// through the path `kiln run` takes (`ModelFile.load`, then `GraphRunner.run`) and compared with rtol 1e-3,
/// atol 1e-4; the report counts matches, mismatches and refusals per operator.
@Suite struct ONNXConformanceTests {
    static let root = "/usr/share/libonnx-testdata/data"
    static let collections = ["node", "pytorch-converted", "pytorch-operator"]
    static let tensorTypes: Set<String> = ["float", "int64", "int32"]
    /// The operators the interop work names (its list of what real CNN exports use).
    static let listed: Set<String> = [
        "Conv", "ConvTranspose", "BatchNormalization", "Gemm", "MatMul", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu",
        "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign", "Erf", "Softmax", "LogSoftmax", "MaxPool",
        "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN", "InstanceNormalization", "LayerNormalization",
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Abs", "Neg", "Floor", "Ceil", "Clip",
        "Max", "Min", "Sum", "Mean", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "Reshape", "Flatten",
        "Transpose", "Concat", "Split", "Slice", "Squeeze", "Unsqueeze", "Pad", "Gather", "Identity", "Dropout",
        "Constant", "Shape",
    ]

    enum Outcome: Equatable { case match, mismatch(String), refused(String) }

    /// Runs one test directory; nil when it is out of scope (an element type other than float32/int64/int32).
    static func run(_ dir: String, types: Set<String> = tensorTypes) throws -> (ops: [String], outcome: Outcome)? {
        let model = try ONNXModel.load(path: "\(dir)/model.onnx")
        let ops = model.operatorCounts.map { $0.op }
        guard model.inputs.allSatisfy({ types.contains($0.elementType) }),
              model.outputs.allSatisfy({ types.contains($0.elementType) }) else { return nil }
        let set = "\(dir)/test_data_set_0"
        var inputs: [(String, TensorFile.Entry)] = []
        for (k, declared) in model.inputs.enumerated() {
            let path = "\(set)/input_\(k).pb"
            guard FileManager.default.fileExists(atPath: path) else { break }
            let t = try ONNXTensor.load(path: path).tensor
            var e = TensorFile.Entry(shape: t.shape, data: t.floats)
            if case .ints(let i) = t.values { e.written = i.map { Double($0) } }
            inputs.append((declared.name, e))
        }
        do {
            let loaded = try ModelFile.load(path: "\(dir)/model.onnx", inputs: inputs)
            let results = try GraphRunner.run(graph: loaded.graph, inputs: loaded.inputs, backward: false)
            for (k, o) in model.outputs.enumerated() {
                let want = try ONNXTensor.load(path: "\(set)/output_\(k).pb").tensor
                guard let got = results.first(where: { $0.0 == o.name })?.1 else { return (ops, .mismatch("no output \(o.name)")) }
                guard got.shape == want.shape || got.data.count == want.count && want.shape.isEmpty else {
                    return (ops, .mismatch("output \(o.name): shape \(got.shape), expected \(want.shape)"))
                }
                for (i, (g, w)) in zip(got.data, want.floats).enumerated() {
                    let ok = g == w || (g.isNaN && w.isNaN) || abs(g - w) <= 1e-4 + 1e-3 * abs(w)
                    if !ok { return (ops, .mismatch("output \(o.name)[\(i)] = \(g), expected \(w)")) }
                }
            }
            return (ops, .match)
        } catch {
            return (ops, .refused("\(error)"))
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: root), "needs Debian's libonnx-testdata (make test installs it)"))
    func backendTestData() throws {
        let supported = ONNXImporter.supportedOperators
        var total = 0, matched = 0, listedTotal = 0, listedMatched = 0
        var perOp: [String: (match: Int, mismatch: Int, refused: Int)] = [:]
        var failures: [String] = [], mismatches: [String] = []
        var outOfScope = 0
        for c in Self.collections {
            let dirs = try FileManager.default.contentsOfDirectory(atPath: "\(Self.root)/\(c)").sorted()
            for d in dirs {
                let dir = "\(Self.root)/\(c)/\(d)"
                guard FileManager.default.fileExists(atPath: "\(dir)/model.onnx") else { continue }
                let model = try ONNXModel.load(path: "\(dir)/model.onnx")
                let ops = model.operatorCounts.map { $0.op }
                let isListed = ops.allSatisfy { Self.listed.contains($0) }
                // Tests of listed operators are run even when Kiln lacks one, so the refusals are counted.
                guard isListed || ops.allSatisfy({ supported.contains($0) }) else { outOfScope += 1; continue }
                guard let r = try Self.run(dir) else { outOfScope += 1; continue }
                total += 1
                if isListed { listedTotal += 1 }
                for op in r.ops {
                    var p = perOp[op] ?? (0, 0, 0)
                    switch r.outcome {
                    case .match: p.match += 1
                    case .mismatch: p.mismatch += 1
                    case .refused: p.refused += 1
                    }
                    perOp[op] = p
                }
                switch r.outcome {
                case .match:
                    matched += 1
                    if isListed { listedMatched += 1 }
                case .mismatch(let m): mismatches.append("\(c)/\(d): \(m)")
                case .refused(let m): failures.append("\(c)/\(d): refused: \(m)")
                }
            }
        }
        print("ONNX backend tests run: \(matched) of \(total) match, \(mismatches.count) mismatch, the rest refused (\(outOfScope) use other operators or element types)")
        print("  of the \(listedTotal) whose operators are all in the list Kiln aims to import: \(listedMatched) match")
        for (op, p) in perOp.sorted(by: { $0.key < $1.key }) {
            print("  \(op): \(p.match) match, \(p.mismatch) mismatch, \(p.refused) refused")
        }
        for f in failures { print("  \(f)") }
        for m in mismatches { print("  MISMATCH \(m)") }
        // Never a wrong answer: what Kiln cannot compute it refuses, naming the node.
        #expect(mismatches.isEmpty, "\(mismatches.count) tests compute wrong values")
        // What the interop work asks: 98% of the tests whose operators are all listed match.
        #expect(Double(listedMatched) >= 0.98 * Double(listedTotal), "\(listedMatched) of \(listedTotal) listed-operator tests match")
        #expect(listedTotal >= 400, "expected the Debian test data to hold over 400 tests of the listed operators")
    }

    /// ONNX's quantization operator tests (8-bit codes in and out, which the run above leaves out): Kiln computes
    /// the codes as floats holding integers, and every one must equal the reference's.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: root), "needs Debian's libonnx-testdata (make test installs it)"),
          arguments: ["test_quantizelinear", "test_quantizelinear_axis", "test_dequantizelinear", "test_dequantizelinear_axis",
                      "test_qlinearconv", "test_qlinearmatmul_2D", "test_qlinearmatmul_3D"])
    func quantizationOperators(_ name: String) throws {
        let dir = "\(Self.root)/node/\(name)"
        let r = try #require(try Self.run(dir, types: Self.tensorTypes.union(["uint8", "int8"])))
        #expect(r.outcome == .match, "\(name): \(r.outcome)")
    }
}
