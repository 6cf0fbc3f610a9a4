import Foundation
import Testing
@testable import Kiln

private func tempPath(_ name: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-paramfile-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// Tests that touch the global `Parameters` registry run one at a time and each use their own scope.
@Suite(.serialized)
struct ParameterFileTests {
    @Test func saveAndLoadIntoFreshVariables() throws {
        let w = try Variable(shape: [2, 3], needGrad: true)
        try w.setData([1, -2, 3.5, 4, 5e-8, -6e20])
        let b = try Variable(shape: [3], needGrad: true)
        try b.setData([0.1, 0.2, 0.3])
        let idx = try Variable(shape: [2], dtype: .int32)
        try idx.setData([Int32(7), -9])
        let path = try tempPath("params.safetensors")
        try ParameterFile.save([("fc/W", w), ("fc/b", b), ("idx", idx)], to: path)

        let w2 = try Variable(shape: [2, 3], needGrad: true), b2 = try Variable(shape: [3], needGrad: true)
        let idx2 = try Variable(shape: [2], dtype: .int32)
        let unused = try ParameterFile.load(into: [("fc/W", w2), ("fc/b", b2), ("idx", idx2)], from: path, requireAll: true)
        #expect(unused.isEmpty)
        #expect(try w2.d == w.d && b2.d == b.d && idx2.data.toInt32s() == [7, -9])

        // A subset: the rest of the file is reported.
        let b3 = try Variable(shape: [3])
        let rest = try ParameterFile.load(into: [("fc/b", b3)], from: path, requireAll: true)
        #expect(b3.d == b.d && Set(rest) == ["fc/W", "idx"])
    }

    @Test func missingAndMisShapedParametersAreNamed() throws {
        let w = try Variable(shape: [2, 2], needGrad: true)
        try w.setData([1, 2, 3, 4] as [Float])
        let path = try tempPath("one.safetensors")
        try ParameterFile.save([("enc/W", w)], to: path)

        let other = try Variable(shape: [1])
        do {
            try ParameterFile.load(into: [("enc/W", try Variable(shape: [2, 2])), ("dec/W", other)], from: path, requireAll: true)
            Issue.record("no error")
        } catch let e as KilnError {
            #expect("\(e)".contains("dec/W"))
        }
        // Not required: the missing one is left alone.
        let keep = try Variable(shape: [1]); try keep.setData([9] as [Float])
        let target = try Variable(shape: [2, 2])
        try ParameterFile.load(into: [("enc/W", target), ("dec/W", keep)], from: path, requireAll: false)
        #expect(target.d == [1, 2, 3, 4] && keep.d == [9])

        // Wrong shape: error names the parameter, and nothing was changed (all-or-nothing).
        let good = try Variable(shape: [2, 2]), bad = try Variable(shape: [4])
        let path2 = try tempPath("two.safetensors")
        try ParameterFile.save([("a", w), ("b", w)], to: path2)
        do {
            try ParameterFile.load(into: [("a", good), ("b", bad)], from: path2, requireAll: true)
            Issue.record("no error")
        } catch let e as KilnError {
            #expect("\(e)".contains("'b'") && "\(e)".contains("[4]"))
        }
        #expect(good.d == [0, 0, 0, 0])
        // Wrong dtype.
        do {
            try ParameterFile.load(into: [("a", try Variable(shape: [2, 2], dtype: .int32))], from: path2, requireAll: true)
            Issue.record("no error")
        } catch let e as KilnError {
            #expect("\(e)".contains("'a'") && "\(e)".contains("int32"))
        }
        // Names are unique by construction: a ParameterDictionary keeps one entry per name, as an OrderedDict.
        let twice: ParameterDictionary = [("a", w), ("a", w)]
        try ParameterFile.save(twice, to: path2)
        #expect(try SafeTensors.read(path: path2).tensors.map(\.0) == ["a"])
    }

    @Test func registrySaveAndLoad() throws {
        let scope = "pftest\(getpid())"
        let path = try tempPath("registry.safetensors")
        let (w, b) = try Parameters.scope(scope) {
            let w = try Parameters.getOrCreate("W", shape: [2, 2], initializer: .constant(0.5))
            let b = try Parameters.getOrCreate("b", shape: [2], initializer: .constant(-1), needGrad: false)
            return (w, b)
        }
        try w.setData([1, 2, 3, 4] as [Float])
        // Save from inside the scope-less registry: everything, including need_grad=false ones by default.
        let mine = Parameters.current(gradOnly: false).filter { $0.name.hasPrefix(scope + "/") }
        #expect(mine.map { $0.name } == ["\(scope)/W", "\(scope)/b"])
        try ParameterFile.save(ParameterDictionary(mine), to: path)

        // Loading sets existing parameters...
        try w.setData([0, 0, 0, 0] as [Float])
        try b.setData([0, 0] as [Float])
        try Parameters.load(path: path)
        #expect(w.d == [1, 2, 3, 4] && b.d == [-1, -1])

        // ...and creates missing ones, relative to the current scope, with need_grad (as nnabla).
        try Parameters.scope("\(scope)-copy") { try Parameters.load(path: path) }
        let created = try #require(Parameters.get("\(scope)-copy/\(scope)/W"))
        #expect(created.d == [1, 2, 3, 4] && created.needGrad && created !== w)
        #expect(created.name == "\(scope)-copy/\(scope)/W")

        // A registered parameter of another shape is an error naming it, and changes nothing.
        let clash = try Parameters.scope("\(scope)-clash") {
            try Parameters.getOrCreate("\(scope)/W", shape: [4], initializer: .constant(3))
        }
        do {
            try Parameters.scope("\(scope)-clash") { try Parameters.load(path: path) }
            Issue.record("no error")
        } catch let e as KilnError {
            #expect("\(e)".contains("\(scope)/W"))
        }
        #expect(clash.d == [3, 3, 3, 3])
        #expect(Parameters.get("\(scope)-clash/\(scope)/b") == nil)

        // Parameters.save writes all parameters (gradOnly false) or only need_grad ones.
        let all = try tempPath("all.safetensors"), gradOnly = try tempPath("gradonly.safetensors")
        try Parameters.save(path: all)
        try Parameters.save(path: gradOnly, gradOnly: true)
        let allNames = Set(try SafeTensors.read(path: all).tensors.map { $0.0 })
        let gradNames = Set(try SafeTensors.read(path: gradOnly).tensors.map { $0.0 })
        #expect(allNames.contains("\(scope)/b") && !gradNames.contains("\(scope)/b"))
        #expect(gradNames.contains("\(scope)/W"))
    }
}
