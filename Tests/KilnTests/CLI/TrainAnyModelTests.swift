import Foundation
import Testing
@testable import Kiln

/// `kiln train` beyond the zoo on Fashion-MNIST: a graph file on a user's NumPy dataset, ResNet-20's RGB
/// input fed from grey images, and the errors for data that cannot feed a model.
struct TrainAnyModelTests {
    /// An `.npy` file of float32 values, written as NumPy's format description says (version 1.0).
    static func npy(_ values: [Float], shape: [Int]) -> Data {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = Array("{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }".utf8)
        while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
        header.append(0x0A)
        var bytes = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)] + header
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        return Data(bytes)
    }

    /// Two classes of 8x8 grey images a small network separates: the bright half is left or right.
    static func halves(_ n: Int, seed: UInt64) -> (images: [Float], labels: [Float]) {
        var s = seed
        var images: [Float] = [], labels: [Float] = []
        for i in 0..<n {
            let label = i % 2
            for _ in 0..<8 { for x in 0..<8 {
                s = s &* 6364136223846793005 &+ 1442695040888963407
                let noise = Float(s >> 40) / Float(1 << 24) * 60
                images.append(((x < 4) == (label == 0) ? 180 : 20) + noise)
            } }
            labels.append(Float(label))
        }
        return (images, labels)
    }

    @Test func aGraphFileTrainsOnAUsersNumpyDataset() throws {
        try #require(KilnProcess.exists)
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("halves")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let train = Self.halves(64, seed: 1), test = Self.halves(32, seed: 2)
        try Self.npy(train.images, shape: [64, 8, 8]).write(to: data.appendingPathComponent("x_train.npy"))
        try Self.npy(train.labels, shape: [64]).write(to: data.appendingPathComponent("y_train.npy"))
        try Self.npy(test.images, shape: [32, 8, 8]).write(to: data.appendingPathComponent("x_test.npy"))
        try Self.npy(test.labels, shape: [32]).write(to: data.appendingPathComponent("y_test.npy"))
        // conv 3x3 (4 maps) -> relu -> affine(2): class scores for batches of 16.
        let graph: String = try Parameters.isolated {
            GlobalRandom.seed(3)
            let x = try Variable(shape: [16, 1, 8, 8], name: "image")
            let h = try F.relu(PF.convolution(F.mulScalar(x, val: 1.0 / 255), outMaps: 4, kernel: [3, 3], name: "conv"))
            let y = try PF.affine(h, outMaps: 2, name: "fc")
            return GraphFile.save([y]).serialized()
        }
        try graph.write(to: dir.appendingPathComponent("net.json"), atomically: true, encoding: .utf8)
        let r = try KilnProcess.run(["train", "net.json", "--dataset", "halves", "--epochs", "4", "--learning-rate", "0.01",
                                     "--model-save-path", "saved"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("net.json on halves (train): 64 training and 32 test images, batch 16"))
        let accuracies = r.stdout.split(separator: "\n").compactMap { line -> Double? in
            guard let range = line.range(of: "test accuracy ") else { return nil }
            return Double(line[range.upperBound...].prefix(6))
        }
        #expect(accuracies.count == 4)
        #expect((accuracies.last ?? 0) >= 0.9, "\(accuracies)")
        // The trained parameters are saved under the file's names.
        let saved = try SafeTensors.read(path: dir.appendingPathComponent("saved/params_000015.safetensors").path)
        #expect(Set(saved.tensors.map(\.0)) == ["conv/conv/W", "conv/conv/b", "fc/affine/W", "fc/affine/b"])
        // A batch size the file was not built for is refused, and so is data that cannot feed the model.
        let batch = try KilnProcess.run(["train", "net.json", "--dataset", "halves", "--batch-size", "8"], in: dir)
        #expect(batch.status == 1 && batch.stderr.contains("built for batches of 16"))
        let lenet = try KilnProcess.run(["train", "lenet", "--dataset", "halves", "--max-iterations", "1"], in: dir)
        #expect(lenet.status == 0, "8x8 images are centred in LeNet's 28x28: \(lenet.stderr)")
        #expect(lenet.stdout.contains("images [1, 8, 8] -> [1, 28, 28]: 8x8 centred in 28x28 (zero border)"))
        let missing = try KilnProcess.run(["train", "lenet", "--dataset", "nowhere"], in: dir)
        #expect(missing.status == 1 && missing.stderr.contains("dataset: nowhere: no such file or directory"))
    }

    @Test func resnet20TakesGreyFashionMNISTAsRGB32x32() throws {
        try #require(KilnProcess.exists)
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try KilnProcess.run(["train", "resnet20", "--max-iterations", "2", "--batch-size", "8", "--eval-iterations", "1",
                                     "--random-crop", "2", "--flip"], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("images [1, 28, 28] -> [3, 32, 32]: channel repeated into 3, 28x28 centred in 32x32 (zero border)"))
        #expect(r.stdout.contains("augmentation: random crop (shift up to 2 px), horizontal flip"))
        #expect(r.stdout.contains("test accuracy"))
    }

    @Test func theCosineScheduleIsWhatTheMonitorRecords() throws {
        try #require(KilnProcess.exists)
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try KilnProcess.run(["train", "lenet", "--max-iterations", "20", "--eval-iterations", "1", "--learning-rate", "0.002",
                                     "--lr-schedule", "cosine", "--monitor-path", dir.appendingPathComponent("m").path], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("Adam(0.002) with cosine decay"))
        let records = try MonitorLog.read(path: dir.appendingPathComponent("m/Learning-rate.series.txt").path)
        // Written every 10 iterations (nnabla's MonitorSeries interval): the mean of the rates of those 10.
        #expect(records.map(\.index) == [9, 19])
        for r in records {
            let rates = ((r.index - 9)...r.index).map { 0.002 * 0.5 * (1 + cos(Double.pi * Double($0) / 20)) }
            let mean = rates.reduce(0, +) / 10
            #expect(abs(r.values[0] - mean) < 1e-6 * 0.002 + 1e-9, "iteration \(r.index): \(r.values[0]) against \(mean)")
        }
    }
}
