import Foundation
import Testing
@testable import Kiln
@testable import KilnInterop
import SwiftProtobuf

/// nnabla's `.nnp` models and `.h5` / `.protobuf` parameter files, against fixtures written by the real
/// nnabla 1.39 (`Fixtures/nnabla-interop/make_fixtures.py`): the networks compute nnabla's outputs, the
/// parameter files hold nnabla's names, order, values and need_grad flags, and what Kiln writes reads back.
@Suite struct NNablaFormatTests {
    static let fixtures = Bundle.module.bundleURL.appendingPathComponent("Fixtures").appendingPathComponent("nnabla-interop")
    static func path(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    struct Expected {
        var x: TensorFile.Entry
        var y: TensorFile.Entry
        var needGrad: [String: Bool]
    }

    static func expected(_ name: String) throws -> Expected {
        let json = try JSON.parse(Array(try Data(contentsOf: fixtures.appendingPathComponent("\(name).expected.json"))))
        func entry(_ k: String) throws -> TensorFile.Entry {
            let t = try #require(json[k])
            return TensorFile.Entry(shape: try #require(t["shape"]?.array).compactMap { $0.int },
                                    data: try JSON.tensorValues(try #require(t["data"]), place: k) { KilnError.invalidData($0) }.map { Float($0) })
        }
        var flags: [String: Bool] = [:]
        for (k, v) in json["need_grad"]?.objectMembers ?? [] { flags[k] = v.bool }
        return Expected(x: try entry("x"), y: try entry("y"), needGrad: flags)
    }

    @Test(arguments: ["convnet", "mixed"])
    func nnpComputesNNablasOutputs(_ name: String) throws {
        try Parameters.isolated {
            let e = try Self.expected(name)
            // Through what `kiln run` does.
            let loaded = try ModelFile.load(path: Self.path("\(name).nnp"), inputs: [("x", e.x)])
            let results = try GraphRunner.run(graph: loaded.graph, inputs: loaded.inputs, backward: false)
            let y = try #require(results.first { $0.0 == "y" }?.1)
            #expect(y.shape == e.y.shape)
            #expect(mismatch(y.data, e.y.data, rtol: 1e-5, atol: 1e-6) == nil, "\(name): outputs differ from nnabla's")
        }
    }

    @Test(arguments: ["convnet", "mixed"])
    func parameterFilesHoldNNablasNamesOrderAndFlags(_ name: String) throws {
        let e = try Self.expected(name)
        let h5 = try NNablaParameterFile.read(path: Self.path("\(name).h5"))
        let pb = try NNablaParameterFile.read(path: Self.path("\(name).protobuf"))
        #expect(h5.map(\.name) == pb.map(\.name), "the .h5 keeps nnabla's order (its index attribute)")
        #expect(Set(h5.map(\.name)) == Set(e.needGrad.keys))
        for (a, b) in zip(h5, pb) {
            #expect(a.array.shape == b.array.shape && a.array.toFloats() == b.array.toFloats(), "\(a.name) differs between .h5 and .protobuf")
            #expect(a.needGrad == e.needGrad[a.name] && b.needGrad == e.needGrad[a.name], "\(a.name): need_grad")
        }
        // The .nnp's own parameters are the same values.
        let nnp = try NNPFile.load(path: Self.path("\(name).nnp"))
        for p in h5 {
            #expect(try #require(nnp.parameters[p.name]).d == p.array.toFloats())
        }
    }

    @Test(arguments: ["h5", "protobuf"])
    func parameterFilesRoundTrip(_ ext: String) throws {
        try Parameters.isolated {
            let nnp = try NNPFile.load(path: Self.path("convnet.nnp"))
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nnabla-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let out = dir.appendingPathComponent("p.\(ext)").path
            try NNablaParameterFile.save(nnp.parameters, to: out)
            let back = try NNablaParameterFile.read(path: out)
            #expect(back.map(\.name) == nnp.parameters.names)
            for (b, (_, v)) in zip(back, nnp.parameters) {
                #expect(b.array.shape == v.shape && b.array.toFloats() == v.d && b.needGrad == v.needGrad)
            }
        }
    }

    @Test func nnpRoundTripsThroughKiln() throws {
        try Parameters.isolated {
            let e = try Self.expected("convnet")
            let nnp = try NNPFile.load(path: Self.path("convnet.nnp"))
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nnp-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let out = dir.appendingPathComponent("again.nnp").path
            try NNPFile.save(nnp.graph.outputs, to: out)
            let loaded = try ModelFile.load(path: out, inputs: [("x", e.x)])
            let results = try GraphRunner.run(graph: loaded.graph, inputs: loaded.inputs, backward: false)
            #expect(mismatch(try #require(results.first?.1).data, e.y.data, rtol: 1e-5, atol: 1e-6) == nil)
            // nnabla keys functions by name: the export names each once.
            let members = try NNPFile.unzip([UInt8](try Data(contentsOf: URL(fileURLWithPath: out))))
            var options = TextFormatDecodingOptions()
            options.ignoreUnknownFields = true
            let proto = try Nnabla_NNablaProtoBuf(textFormatString: String(decoding: try #require(members["network.nntxt"]), as: UTF8.self), options: options)
            let names = proto.network[0].function.map(\.name)
            #expect(Set(names).count == names.count, "function names repeat")
            #expect(members["nnp_version.txt"] != nil && members["parameter.h5"] != nil)
            // A batch other than the file's rebuilds the network.
            let four = try NNPFile.load(path: out, batchSize: 4)
            #expect(four.graph.outputs[0].shape == [4, 5])
        }
    }

    /// `kiln train X.nnp`'s two graphs: BatchNormalization on batch statistics for training, the file's as
    /// it is for evaluation, both on the same weights.
    @Test func trainingAndEvaluationGraphsShareWeights() throws {
        try Parameters.isolated {
            let t = try NNPFile.load(path: Self.path("convnet.nnp"), batchSize: 4, training: true)
            let e = try NNPFile.load(path: Self.path("convnet.nnp"), batchSize: 3, parameters: t.parameters)
            for (name, v) in t.parameters { #expect(e.parameters[name] === v, "\(name) is not shared") }
            func batchStat(_ g: GraphFile) -> [Bool] {
                g.functions.compactMap { $0.function as? KilnGraph.BatchNormalization }.map(\.batchStat)
            }
            #expect(batchStat(t.graph) == [true] && batchStat(e.graph) == [false])
            #expect(t.graph.outputs[0].shape == [4, 5] && e.graph.outputs[0].shape == [3, 5])
        }
    }

    @Test func nnpExportRefusesFunctionsNNablaLacks() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [1, 3, 4, 4], name: "x")
            let y = try apply(LRN(size: 3), [x])[0]
            #expect(throws: KilnError.self) { _ = try NNPFile.archive([y]) }
        }
    }

    /// Hostile bytes: truncated archives and parameter files, random bytes: thrown errors, never a crash.
    @Test func truncatedFilesAreErrors() throws {
        for file in ["convnet.nnp", "convnet.h5", "convnet.protobuf"] {
            let bytes = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent(file)))
            for cut in stride(from: 0, to: bytes.count, by: max(bytes.count / 41, 1)) {
                let part = Array(bytes[..<cut])
                do {
                    if file.hasSuffix(".nnp") { _ = try NNPFile.load(bytes: part) }
                    else if file.hasSuffix(".h5") { _ = try NNablaParameterFile.readH5(part) }
                    else { _ = try NNablaParameterFile.readProtobuf(part) }
                } catch is KilnError {}
            }
        }
        #expect(throws: KilnError.self) { _ = try NNablaParameterFile.readH5(Array("not an HDF5 file at all".utf8)) }
        // Found by FuzzNNP: a zip entry pointing past the end of the data trapped ZIPFoundation's in-memory reader.
        let hostile = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("hostile-entry-past-end.nnp")))
        #expect(throws: KilnError.self) { _ = try NNPFile.load(bytes: hostile) }
        // Found by FuzzNNP: a corrupted parameter.h5 makes libhdf5 ask for petabytes, which malloc refuses; the
        // load fails with an error (under AddressSanitizer the request itself is reported).
        let huge = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("hostile-hdf5-huge-allocation.nnp")))
        #expect(throws: KilnError.self) { _ = try NNPFile.load(bytes: huge) }
        #expect(throws: KilnError.self) { _ = try NNPFile.load(bytes: Array("not a zip".utf8)) }
    }
}
