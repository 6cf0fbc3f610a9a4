import Foundation
import Testing
@testable import Kiln

struct IDXTests {
    @Test func parsesAHandMadeFile() throws {
        let raw: [UInt8] = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]
        let f = try IDXFile.parse(raw, name: "t")
        #expect(f.shape == [2, 3])
        #expect(f.bytes == [1, 2, 3, 4, 5, 6])
    }

    @Test(arguments: [[UInt8]([1, 0, 8, 1]), [0, 0, 8, 1, 0, 0, 0, 5, 1, 2], [0, 0, 13, 1, 0, 0, 0, 1, 0], [0, 0, 8, 9]])
    func rejectsMalformedFiles(_ raw: [UInt8]) {
        #expect(throws: KilnError.self) { try IDXFile.parse(raw, name: "bad") }
    }

    @Test func missingDatasetSaysHowToInstallIt() {
        do {
            _ = try FashionMNIST.load(train: false, directory: "/nonexistent")
            Issue.record("no error")
        } catch {
            #expect("\(error)".contains("apt-get install -y dataset-fashion-mnist"))
        }
    }

    @Test func corruptGzipIsAnError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-idx-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let p = dir.appendingPathComponent("x.gz").path
        try AtomicFile.write([0x1f, 0x8b, 8, 0, 1, 2, 3], to: p)
        #expect(throws: KilnError.self) { try IDXFile.read(path: p) }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory)))
    func readsDebianFashionMNIST() throws {
        let test = try FashionMNIST.load(train: false)
        #expect(test.count == 10_000)
        #expect(test.images.count == 10_000 * 784)
        // Each of the 10 classes has exactly 1,000 test images.
        var counts = [Int](repeating: 0, count: 10)
        for l in test.labels { counts[Int(l)] += 1 }
        #expect(counts == [Int](repeating: 1000, count: 10))
    }
}
