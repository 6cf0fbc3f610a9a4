import Foundation
import Testing
@testable import Kiln
@testable import KilnInterop

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
