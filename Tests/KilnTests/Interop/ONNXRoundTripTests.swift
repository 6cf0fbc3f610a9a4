import Foundation
import Testing
@testable import Kiln
@testable import KilnInterop
import SwiftProtobuf

/// ONNX export and import against each other: a zoo model written as ONNX and read back computes what the
/// original graph computes, with the same parameter names and values; what has no ONNX form is refused.
@Suite struct ONNXRoundTripTests {
    static func runInference(_ outputs: [Variable]) throws -> [Float] {
        try Compiler.compile(outputs, .inference, options: CompileOptions()).run()
        return outputs[0].d
    }

    @Test(arguments: [Zoo.lenet, Zoo.resnet20, Zoo.mlp])
    func zooModelSurvivesExportAndImport(_ zoo: Zoo) throws {
        try Parameters.isolated {
            let net = try zoo.network(rng: NumpyRandom(seed: 11))
            let m = try zoo.build(batchSize: 3, training: false, network: net)
            var rng = SplitMix64(seed: 12)
            let x = (0..<m.input.size).map { _ in Float.random(in: 0...1, using: &rng) }
            try m.input.setData(x)
            let want = try Self.runInference([m.prediction])

            let bytes = try ONNXExporter.export([m.prediction]).serializedBytes()
            let model = try ONNXModel(bytes: bytes)
            #expect(model.opsetVersion == ONNXExporter.opset)
            let imported = try ONNXImporter.importGraph(model)
            // Every parameter of the network is an initializer under its Kiln name, with its values.
            for (name, v) in net.getParameters(gradOnly: false) {
                let p = try #require(imported.parameters[name], "parameter \(name) is missing after the round trip")
                #expect(p.d == v.d, "\(name) changed")
            }
            let input = try #require(imported.graph.variables[m.input.name])
            #expect(imported.graph.inputsWithoutData == [m.input.name])
            try input.setData(x)
            let got = try Self.runInference(imported.graph.outputs)
            #expect(got.count == want.count)
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-6, "largest difference \(worst)")
        }
    }

    /// One chain through every function the exporter writes besides the zoo's: exported, imported, run, the
    /// same values.
    static func kitchenSink() throws -> (x: Variable, outputs: [Variable]) {
        let x = try Variable(shape: [2, 3, 4, 5], name: "x")
        var rng = SplitMix64(seed: 5)
        func param(_ name: String, _ shape: [Int], _ range: ClosedRange<Float> = -1...1) throws -> Variable {
            let v = try Variable(shape: shape, needGrad: true, name: name)
            try v.setData((0..<v.size).map { _ in Float.random(in: range, using: &rng) })
            v.isParameter = true
            return v
        }
        func f(_ type: String, _ args: [String: ArgValue] = [:], _ inputs: [Variable]) throws -> Variable {
            try apply(FunctionRegistry.make(type: type, arguments: args), inputs)[0]
        }
        var h = try f("Pad", ["pad_width": .ints([1, 1, 0, 2]), "mode": .string("reflect")], [x])        // 2x3x6x7
        h = try f("PReLU", ["base_axis": .int(1)], [h, try param("slope", [3])])
        h = try f("LayerNormalization", ["batch_axis": .ints([0, 1])], [h, try param("ln/beta", [1, 1, 6, 7]), try param("ln/gamma", [1, 1, 6, 7])])
        h = try f("InstanceNormalization", ["eps": .double(1e-3)], [h, try param("in/beta", [1, 3, 1, 1]), try param("in/gamma", [1, 3, 1, 1])])
        h = try f("LRN", ["size": .int(3)], [h])
        let a = try f("SELU", [:], [try f("Exp", [:], [try f("MinimumScalar", ["val": .double(0.5)], [h])])])
        let b = try f("SoftPlus", [:], [try f("HardSwish", [:], [try f("Erf", [:], [h])])])
        h = try f("Maximum2", [:], [a, try f("Pow2", [:], [try f("Abs", [:], [b]), try f("HardSigmoid", [:], [h])])])
        h = try f("Log", [:], [try f("AddScalar", ["val": .double(1)], [try f("SoftSign", [:], [try f("ReLU6", [:], [h])])])])
        h = try f("Minimum2", [:], [h, try f("MaximumScalar", ["val": .double(-0.25)], [try f("Floor", [:], [h])])])
        let m = try f("Max", ["axes": .ints([3]), "keep_dims": .bool(true)], [h])
        let idx = try Variable(shape: [2], dtype: .int32, name: "idx")
        try idx.setData([5, 0])
        idx.isParameter = true
        let g = try f("Gather", ["axis": .int(2)], [h, idx])                                                 // 2x3x2x7
        let mm = try f("BatchMatmul", ["transpose_b": .bool(true)], [try f("Reshape", ["shape": .ints([6, 2, 7])], [g]),
                                                                     try f("Reshape", ["shape": .ints([6, 2, 7])], [g])])
        return (x, [try f("Min", ["axes": .ints([1])], [mm]), m])
    }

    @Test func everyExportedFunctionSurvivesExportAndImport() throws {
        try Parameters.isolated {
            let (x, outputs) = try Self.kitchenSink()
            var rng = SplitMix64(seed: 6)
            let data = (0..<x.size).map { _ in Float.random(in: -2...2, using: &rng) }
            try x.setData(data)
            try Compiler.compile(outputs, .inference, options: CompileOptions()).run()
            let want = outputs.map { $0.d }
            let model = try ONNXModel(bytes: ONNXExporter.export(outputs).serializedBytes())
            let ops = Set(model.operatorCounts.map { $0.op })
            for op in ["Pad", "PRelu", "LayerNormalization", "InstanceNormalization", "LRN", "Selu", "Softplus", "HardSwish", "Pow",
                       "Max", "Min", "Clip", "Softsign", "Floor", "ReduceMax", "ReduceMin", "Gather", "MatMul", "Transpose"] {
                #expect(ops.contains(op), "the export has no \(op)")
            }
            let imported = try ONNXImporter.importGraph(model)
            try #require(imported.graph.variables["x"]).setData(data)
            try Compiler.compile(imported.graph.outputs, .inference, options: CompileOptions()).run()
            for (o, w) in zip(imported.graph.outputs, want) {
                let worst = zip(o.d, w).map { Swift.abs($0 - $1) }.max() ?? 0
                #expect(worst <= 1e-5, "\(o.name): largest difference \(worst)")
            }
        }
    }

    /// nnabla's FixedPointQuantize exported exactly: as QuantizeLinear/DequantizeLinear for a parameter with
    /// a power-of-two step and no halfway value, as nnabla's own arithmetic otherwise (activations, halfway
    /// values, other steps), with a note; the exported model imported back computes the same values, halfway
    /// cases and out-of-range values included.
    @Test(arguments: [(true, 4, 0.25), (false, 8, 0.0625), (true, 8, 0.1)])
    func fixedPointQuantizersExportExactly(_ c: (Bool, Int, Double)) throws {
        try Parameters.isolated {
            let q = FixedPointQuantize(sign: c.0, n: c.1, delta: c.2)
            let x = try Variable(shape: [12], name: "x")
            let w = try Variable(shape: [12], needGrad: true, name: "w")
            w.isParameter = true
            let d = Float(c.2)
            let values: [Float] = [0.5 * d, 1.5 * d, -0.5 * d, -2.5 * d, 0.3 * d, 100 * d, -100 * d, 0, 3 * d, 2.49 * d, -7.5 * d, 6.5 * d]
            try x.setData(values)
            try w.setData(values.map { $0 + 0.013 * d })         // no halfway value
            let qx = try apply(q, [x], name: "qx")[0], qw = try apply(q, [w], name: "qw")[0]
            let y = try apply(Add2(), [qx, qw], name: "sum")[0]
            try Compiler.compile([y], .inference, options: CompileOptions()).run()
            let want = y.d
            let model = try ONNXExporter.export([y])
            let ops = model.operatorCounts.map { $0.op }
            let powerOfTwo = Float(c.2).significandBitPattern == 0
            #expect(ops.contains("QuantizeLinear") == powerOfTwo, "weights as QDQ exactly when the step is a power of two: \(model.notes)")
            #expect(model.notes.contains { $0.hasPrefix("qx") && $0.contains("run time") }, "the activation quantizer is noted")
            let imported = try ONNXImporter.importGraph(try ONNXModel(bytes: model.serializedBytes()))
            try #require(imported.graph.variables["x"]).setData(values)
            try Compiler.compile(imported.graph.outputs, .inference, options: CompileOptions()).run()
            #expect(imported.graph.outputs[0].d == want, "the exported quantizers differ from nnabla's")
            // A parameter holding a halfway value is not written as QDQ.
            try w.setData(values)
            let again = try ONNXExporter.export([y])
            #expect(!again.operatorCounts.map { $0.op }.contains("QuantizeLinear"))
            #expect(again.notes.contains { $0.contains("halfway") || $0.contains("power of two") })
        }
    }

    /// Integer Mod as ONNX defines it when folding shape arithmetic: the divisor's sign (Python's %), or the
    /// dividend's with fmod (C's).
    @Test func integerModFollowsONNX() throws {
        let b = ONNXGraphBuilder(opset: 13)
        let x = ONNXTensor(shape: [4], ints: [-7, 7, -7, 6]), y = ONNXTensor(shape: [4], ints: [3, -3, -3, 3])
        #expect(try b.integerArithmetic("Mod", x, y).values == .ints([2, -2, -1, 0]))
        #expect(try b.integerArithmetic("Mod", x, y, fmod: true).values == .ints([-1, 1, -1, 0]))
        #expect(throws: KilnError.self) { _ = try b.integerArithmetic("Mod", x, ONNXTensor(shape: [1], ints: [0])) }
    }

    @Test func lossesAreRefusedNamingTheFunction() throws {
        try Parameters.isolated {
            let m = try Zoo.mlp.build(batchSize: 2, training: true)
            #expect {
                _ = try ONNXExporter.export([m.loss])
            } throws: { e in
                "\(e)".contains("SoftmaxCrossEntropy") && "\(e)".contains("ONNX export")
            }
        }
    }

    @Test func shapesGivenForInputsMustAgreeWithTheModel() throws {
        try Parameters.isolated {
            let m = try Zoo.lenet.build(batchSize: 1, training: false, network: Zoo.lenet.network(rng: NumpyRandom(seed: 3)))
            let model = try ONNXModel(bytes: ONNXExporter.export([m.prediction]).serializedBytes())
            // The exported batch is 1; a shape given for it must agree, and a wrong rank is refused.
            #expect(throws: KilnError.self) {
                _ = try ONNXImporter.importGraph(model, options: .init(inputShapes: ["x": [4, 1, 28, 28]]))
            }
            #expect(throws: KilnError.self) {
                _ = try ONNXImporter.importGraph(model, options: .init(inputShapes: ["x": [1, 28, 28]]))
            }
            #expect(throws: KilnError.self) {
                _ = try ONNXImporter.importGraph(model, options: .init(inputShapes: ["nonexistent": [1]]))
            }
        }
    }

    /// Hostile bytes: every prefix of a real model and random bytes are thrown errors, never a crash.
    @Test func truncatedAndRandomFilesAreErrors() throws {
        try Parameters.isolated {
            let m = try Zoo.mlp.build(batchSize: 1, training: false)
            let bytes = try ONNXExporter.export([m.prediction]).serializedBytes()
            var failures = 0
            for cut in stride(from: 0, to: bytes.count, by: max(bytes.count / 97, 1)) {
                do {
                    let model = try ONNXModel(bytes: Array(bytes[..<cut]))
                    _ = try ONNXImporter.importGraph(model)
                } catch is KilnError {
                    failures += 1
                }
            }
            #expect(failures > 90, "most prefixes cut a message or a tensor short")
            var rng = SplitMix64(seed: 9)
            for _ in 0..<200 {
                let junk = (0..<Int.random(in: 1...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                do { _ = try ONNXImporter.importGraph(try ONNXModel(bytes: junk)) } catch is KilnError {}
            }
        }
    }

    /// A model that declares a huge input is refused before anything is allocated: its inputs count against
    /// the memory budget.
    @Test func hugeDeclaredInputsAreRefusedWithinTheBudget() throws {
        var dim = Onnx_TensorShapeProto.Dimension()
        dim.dimValue = 1 << 12
        var input = Onnx_ValueInfoProto()
        input.name = "x"
        input.type.tensorType.elemType = 1
        input.type.tensorType.shape.dim = [dim, dim]
        var output = Onnx_ValueInfoProto()
        output.name = "y"
        var relu = Onnx_NodeProto()
        relu.opType = "Relu"
        relu.input = ["x"]
        relu.output = ["y"]
        var model = Onnx_ModelProto()
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 13
        model.opsetImport = [opset]
        model.graph.input = [input]
        model.graph.output = [output]
        model.graph.node = [relu]
        let bytes: [UInt8] = try model.serializedBytes()
        try Context.with(Context(memoryBudget: 1 << 24)) {
            #expect {
                _ = try ONNXImporter.importGraph(try ONNXModel(bytes: bytes))
            } throws: { "\($0)".contains("memory budget") }
        }
        let nntxt = #"network { name: "n" batch_size: 1 variable { name: "x" type: "Buffer" shape { dim: 4096 dim: 4096 } } variable { name: "y" type: "Buffer" shape { dim: 4096 dim: 4096 } } function { name: "r" type: "ReLU" input: "x" output: "y" } }"#
        try Context.with(Context(memoryBudget: 1 << 24)) {
            var proto = Nnabla_NNablaProtoBuf()
            var options = TextFormatDecodingOptions()
            options.ignoreUnknownFields = true
            proto = try Nnabla_NNablaProtoBuf(textFormatString: nntxt, options: options)
            #expect {
                _ = try NNPFile.graph(proto, [], network: nil, batchSize: nil)
            } throws: { "\($0)".contains("memory budget") }
        }
    }

    /// A tensor whose dims claim more than its data holds is an error before anything is allocated.
    @Test func tensorDataMustMatchItsDims() throws {
        var t = Onnx_TensorProto()
        t.dims = [1 << 30, 1 << 30]
        t.dataType = 1
        t.rawData = Data([0, 0, 128, 63])
        #expect(throws: KilnError.self) { _ = try ONNXTensor(proto: t, place: "test") }
        t.dims = [2]
        #expect(throws: KilnError.self) { _ = try ONNXTensor(proto: t, place: "test") }
        t.dims = [1]
        #expect(try ONNXTensor(proto: t, place: "test").floats == [1])
    }
}
