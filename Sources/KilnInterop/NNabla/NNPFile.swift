import Foundation
import KilnCore
import KilnGraph
import SwiftProtobuf
import ZIPFoundation

/// nnabla's `.nnp` model files: a zip archive of `network.nntxt` (NNablaProtoBuf in protobuf's text
/// format: networks of nnabla functions, executors naming their inputs and outputs), the parameters as
/// `parameter.h5` or `parameter.protobuf`, and `nnp_version.txt`.
///
/// Contract: a network becomes the same nnabla functions with the same arguments in a Kiln graph, its
/// parameters leaves under their nnabla names; a function Kiln lacks, a repeat or recurrent block, or a
/// parameter without a value is an error naming it.
public enum NNPFile {
    public struct Loaded {
        public var graph: GraphFile
        public var parameters: ParameterDictionary
        /// The network read, and the others the file holds.
        public var network: String
        public var networks: [String]
    }

    /// Reads an `.nnp` file's network (`network`, else the first executor's, else the first) at `batchSize`
    /// (else the network's own).
    /// `training` builds the network for training: BatchNormalization on batch statistics. `parameters`
    /// are used instead of the file's where name and shape match (an evaluation graph sharing a training
    /// graph's weights).
    public static func load(path: String, network: String? = nil, batchSize: Int? = nil, training: Bool = false,
                            parameters: ParameterDictionary? = nil) throws -> Loaded {
        let bytes = try FileBytes.read(path: path, limit: Context.current.memoryBudget, what: ".nnp file")
        do {
            return try load(bytes: bytes, network: network, batchSize: batchSize, training: training, parameters: parameters)
        } catch KilnError.invalidGraphFile(let m) {
            throw KilnError.invalidGraphFile("\(path): \(m)")
        } catch KilnError.invalidParameters(let m) {
            throw KilnError.invalidGraphFile("\(path): \(m)")
        }
    }

    public static func load(bytes: [UInt8], network: String? = nil, batchSize: Int? = nil, training: Bool = false,
                            parameters shared: ParameterDictionary? = nil) throws -> Loaded {
        let members = try unzip(bytes)
        guard let text = members["network.nntxt"] ?? members.first(where: { $0.key.hasSuffix(".nntxt") || $0.key.hasSuffix(".prototxt") })?.value else {
            throw KilnError.invalidGraphFile("the archive has no network.nntxt")
        }
        var options = TextFormatDecodingOptions()
        options.ignoreUnknownFields = true
        options.messageDepthLimit = 64
        var proto: Nnabla_NNablaProtoBuf
        do { proto = try Nnabla_NNablaProtoBuf(textFormatString: String(decoding: text, as: UTF8.self), options: options) } catch {
            throw KilnError.invalidGraphFile("network.nntxt is not nnabla's text format (\(error))")
        }
        var parameters = try NNablaParameterFile.entries(proto.parameter)
        if let h5 = members["parameter.h5"] { parameters += try NNablaParameterFile.readH5(h5) }
        if let pb = members["parameter.protobuf"] { parameters += try NNablaParameterFile.readProtobuf(pb) }
        proto.parameter = []
        return try graph(proto, parameters, network: network, batchSize: batchSize, training: training, shared: shared)
    }

    /// The members of a zip archive, each within the memory budget. ZIPFoundation reads it from a private
    /// temporary file: its in-memory reader traps on entries that point past the end of the data.
    static func unzip(_ bytes: [UInt8]) throws -> [String: [UInt8]] {
        try AtomicFile.withTemporaryCopy(of: bytes, named: "archive.nnp") { try unzip(path: $0) }
    }

    static func unzip(path: String) throws -> [String: [UInt8]] {
        let archive: Archive
        do { archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read) } catch {
            throw KilnError.invalidGraphFile("not a zip archive (\(error))")
        }
        let limit = Context.current.memoryBudget ?? Int.max
        var out: [String: [UInt8]] = [:]
        var total = 0
        for entry in archive where entry.type == .file {
            let declared = Int(clamping: entry.uncompressedSize)
            total = total &+ declared
            guard declared >= 0, total >= 0, total <= limit else {
                throw KilnError.invalidGraphFile("member \(entry.path) declares \(entry.uncompressedSize) bytes, beyond the memory budget")
            }
            var data: [UInt8] = []
            data.reserveCapacity(declared)
            do {
                _ = try archive.extract(entry) { chunk in
                    guard data.count + chunk.count <= declared else { throw KilnError.invalidGraphFile("inflates past its declared size") }
                    data.append(contentsOf: chunk)
                }
            } catch {
                throw KilnError.invalidGraphFile("member \(entry.path) cannot be read (\(error))")
            }
            out[entry.path] = data
        }
        return out
    }

    static func graph(_ proto: Nnabla_NNablaProtoBuf, _ parameters: [NNablaParameterFile.Entry], network wanted: String?,
                      batchSize: Int?, training: Bool = false, shared: ParameterDictionary? = nil) throws -> Loaded {
        let names = proto.network.map { $0.name }
        let chosen = wanted ?? proto.executor.first?.networkName ?? names.first
        guard let name = chosen, let net = proto.network.first(where: { $0.name == name }) else {
            throw KilnError.invalidGraphFile(names.isEmpty ? "the file holds no network"
                : "no network named '\(chosen ?? "")' (the file holds \(names.joined(separator: ", ")))")
        }
        func fail(_ m: String) -> KilnError { .invalidGraphFile("network '\(name)': \(m)") }
        guard net.repeatInfo.isEmpty else { throw fail("repeat blocks (repeat_info) are not supported") }
        let batch = batchSize ?? (net.batchSize > 0 ? Int(net.batchSize) : 1)
        guard batch >= 1, batch <= Int(Int32.max) else { throw fail("batch size \(batch) is out of range") }
        var byName: [String: NNablaParameterFile.Entry] = [:]
        for p in parameters { byName[p.name] = p }
        let produced = Set(net.function.flatMap { $0.output })
        var values: [String: Variable] = [:]
        var declared: [String: [Int]] = [:]
        var inputs: [String] = []
        var params = ParameterDictionary()
        var inputBytes = CheckedInt(0)
        for v in net.variable {
            guard !v.name.isEmpty, declared[v.name] == nil else { throw fail("variable '\(v.name)' is unnamed or declared twice") }
            guard v.repeatID.isEmpty else { throw fail("variable '\(v.name)' is in a repeat block, which is not supported") }
            let shape = try v.shape.dim.map { d -> Int in
                if d == -1 { return batch }
                guard d >= 0, d <= Int64(Int32.max) else { throw fail("variable '\(v.name)' has shape \(v.shape.dim)") }
                return Int(d)
            }
            declared[v.name] = shape
            if produced.contains(v.name) { continue }
            if v.type == "Parameter" {
                guard let p = byName[v.name] else { throw fail("parameter '\(v.name)' has no value in the file") }
                guard p.array.shape == shape else { throw fail("parameter '\(v.name)' is declared \(shape) but stored \(p.array.shape)") }
                if let s = shared?[v.name], s.shape == shape {
                    values[v.name] = s
                    params[v.name] = s
                    continue
                }
                let leaf = try Variable(p.array, needGrad: p.needGrad, name: v.name)
                leaf.isParameter = true
                values[v.name] = leaf
                params[v.name] = leaf
            } else {
                // Inputs are allocated as declared: their total must fit the memory budget first.
                let bytes = try CheckedInt(try Shapes.count(shape, context: "variable '\(v.name)'")) * 4
                inputBytes = inputBytes + bytes
                let total = try inputBytes.get("the network's inputs")
                if let budget = Context.current.memoryBudget, total > budget {
                    throw fail("its inputs would take \(total) bytes, above the memory budget of \(budget) bytes")
                }
                let leaf = try Variable(shape: shape, needGrad: false, name: v.name)
                leaf.isInput = true
                values[v.name] = leaf
                inputs.append(v.name)
            }
        }
        for f in net.function {
            let place = "function '\(f.name)' (\(f.type))"
            guard f.repeatID.isEmpty, !f.hasRepeatParam, !f.hasRecurrentParam else {
                throw fail("\(place) is in a repeat or recurrent block, which is not supported")
            }
            let ins = try f.input.map { n -> Variable in
                guard let v = values[n] else { throw fail("\(place) reads '\(n)', which nothing before it gives") }
                return v
            }
            var args = NNablaFunctionArguments.arguments(f) ?? [:]
            if training && f.type == "BatchNormalization" { args["batch_stat"] = .bool(true) }
            let outs: [Variable]
            do { outs = try apply(FunctionRegistry.make(type: f.type, arguments: args), ins, name: f.name) } catch let e as KilnError {
                throw fail("\(place): \(e)")
            }
            guard outs.count == f.output.count else { throw fail("\(place) makes \(outs.count) outputs, the file names \(f.output.count)") }
            for (o, v) in zip(f.output, outs) {
                guard values[o] == nil else { throw fail("\(place) writes '\(o)', which already has a value") }
                if let d = declared[o], d != v.shape { throw fail("variable '\(o)' is declared \(d), \(f.type) makes \(v.shape)") }
                v.name = o
                values[o] = v
            }
        }
        let consumed = Set(net.function.flatMap { $0.input })
        var outputNames = proto.executor.first(where: { $0.networkName == name })?.outputVariable.map { $0.variableName } ?? []
        if outputNames.isEmpty { outputNames = net.function.flatMap { $0.output }.filter { !consumed.contains($0) } }
        let outputs = try outputNames.map { n -> Variable in
            guard let v = values[n] else { throw fail("output '\(n)' is not a variable of the network") }
            return v
        }
        guard !outputs.isEmpty else { throw fail("it has no outputs") }
        let file = try GraphFile(outputs: outputs, inputsWithoutData: inputs.filter { n in file_reads(outputs, values[n]) })
        return Loaded(graph: file, parameters: params, network: name, networks: names)
    }

    /// Whether the graph behind `outputs` reads `v`.
    static func file_reads(_ outputs: [Variable], _ v: Variable?) -> Bool {
        guard let v else { return false }
        if outputs.contains(where: { $0 === v }) { return true }
        return GraphCollector.nodes(from: outputs).contains { n in n.inputs.contains { $0 === v } }
    }

    // MARK: - Writing

    /// Writes the graph behind `outputs` as an `.nnp` (network "Main", an executor "Runtime" naming its inputs,
    /// outputs and parameters, the parameters as `parameter.h5`), atomically. Every function must be one
    /// of nnabla's.
    public static func save(_ outputs: [Variable], to path: String) throws {
        try AtomicFile.write(try archive(outputs), to: path)
    }

    static func archive(_ outputs: [Variable]) throws -> [UInt8] {
        let nodes = try GraphCollector.checkedNodes(from: outputs)
        var names: [ObjectIdentifier: String] = [:]
        var used = Set<String>()
        var counter = 0
        var net = Nnabla_Network()
        net.name = "Main"
        var inputs: [Variable] = [], params = ParameterDictionary()
        func name(_ v: Variable) -> String {
            if let n = names[ObjectIdentifier(v)] { return n }
            var n = v.name
            while n.isEmpty || used.contains(n) {
                counter += 1
                n = "\(v.name.isEmpty ? "v" : v.name)_\(counter)"
            }
            used.insert(n)
            names[ObjectIdentifier(v)] = n
            var d = Nnabla_Variable()
            d.name = n
            d.type = v.parent == nil && v.isParameter && !v.isInput ? "Parameter" : "Buffer"
            d.shape.dim = v.shape.map { Int64($0) }
            net.variable.append(d)
            if v.parent == nil {
                if d.type == "Parameter" { params[n] = v } else { inputs.append(v) }
            }
            return n
        }
        // nnabla keys functions by name: each must be unique.
        var functionNames = Set<String>()
        for node in nodes {
            var f = Nnabla_Function()
            let base = node.name.isEmpty ? node.function.typeName : node.name
            f.name = base
            var k = 1
            while !functionNames.insert(f.name).inserted {
                k += 1
                f.name = "\(base)_\(k)"
            }
            f.type = node.function.typeName
            f.input = node.inputs.map(name)
            f.output = node.outputs.map { $0.map(name) ?? "unused" }
            let args = Dictionary(node.function.arguments, uniquingKeysWith: { a, _ in a })
            if !NNablaFunctionArguments.set(&f, type: f.type, args) && !args.isEmpty {
                throw KilnError.invalidGraphFile(".nnp export: function '\(f.name)' (\(f.type)) is not one of nnabla's")
            }
            var context = Nnabla_Context()
            context.backends = ["cpu:float"]
            context.arrayClass = "CpuCachedArray"
            f.context = context
            net.function.append(f)
        }
        for o in outputs { _ = name(o) }
        let batch = inputs.first?.shape.first ?? 1
        net.batchSize = Int64(batch)
        // As nnabla writes it: a buffer's leading batch dimension is -1, the network's batch size fills it in.
        for k in net.variable.indices where net.variable[k].type == "Buffer" && net.variable[k].shape.dim.first == Int64(batch) {
            net.variable[k].shape.dim[0] = -1
        }
        var proto = Nnabla_NNablaProtoBuf()
        proto.version = "1.39.0"
        var context = Nnabla_Context()
        context.backends = ["cpu:float"]
        context.arrayClass = "CpuCachedArray"
        proto.globalConfig.defaultContext = context
        proto.network = [net]
        var exec = Nnabla_Executor()
        exec.name = "Runtime"
        exec.networkName = "Main"
        exec.dataVariable = inputs.map { v in
            var d = Nnabla_DataVariable()
            d.variableName = name(v)
            d.dataName = name(v)
            return d
        }
        exec.outputVariable = outputs.map { v in
            var d = Nnabla_OutputVariable()
            d.variableName = name(v)
            d.dataName = name(v)
            return d
        }
        exec.parameterVariable = params.map { p in
            var d = Nnabla_ParameterVariable()
            d.variableName = p.name
            return d
        }
        proto.executor = [exec]
        let h5 = try NNablaParameterFile.h5Image(params.map {
            NNablaParameterFile.Entry(name: $0.name, array: $0.variable.data, needGrad: $0.variable.needGrad)
        })
        let members: [(String, [UInt8])] = [
            ("nnp_version.txt", Array("0.1\n".utf8)),
            ("network.nntxt", Array(proto.textFormatString().utf8)),
            ("parameter.h5", h5),
        ]
        let zip: Archive
        do { zip = try Archive(data: Data(), accessMode: .create) } catch {
            throw KilnError.io(".nnp export: cannot make a zip archive (\(error))")
        }
        for (path, bytes) in members {
            let data = Data(bytes)
            do {
                try zip.addEntry(with: path, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .deflate) { position, size in
                    data.subdata(in: Int(position)..<(Int(position) + size))
                }
            } catch { throw KilnError.io(".nnp export: cannot add \(path) (\(error))") }
        }
        guard let data = zip.data else { throw KilnError.io(".nnp export: the zip archive is empty") }
        return [UInt8](data)
    }
}
