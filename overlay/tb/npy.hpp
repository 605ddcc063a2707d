/**
 * \file npy.hpp
 * \brief A tiny reader of NumPy .npy files (version 1.0/2.0, little-endian, C order).
 *
 * Enough for the golden vectors the Python side writes: uint8, int32 and uint32 arrays.
 * Elements are returned widened to `long long` with their shape.
 */
#ifndef SENTEI_TB_NPY_HPP
#define SENTEI_TB_NPY_HPP

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sentei {
namespace tb {

struct npy_array {
    std::vector<long long> data;
    std::vector<size_t> shape;
};

/// The text of `key`'s value in the header dict: a quoted string without quotes, a tuple
/// with its parentheses, or a bare word.
inline std::string npy_field(const std::string& header, const std::string& key) {
    size_t at = header.find("'" + key + "'");
    if (at == std::string::npos) throw std::runtime_error("npy header has no '" + key + "'");
    at = header.find_first_not_of(" ", header.find(':', at) + 1);
    if (header[at] == '(') return header.substr(at, header.find(')', at) - at + 1);
    if (header[at] == '\'') return header.substr(at + 1, header.find('\'', at + 1) - at - 1);
    return header.substr(at, header.find_first_of(",}", at) - at);
}

/// Read `path`; throws std::runtime_error naming the file on anything unexpected.
inline npy_array read_npy(const std::string& path) {
    std::ifstream in(path.c_str(), std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    char magic[8];
    in.read(magic, 8);
    if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + " is not a .npy file");
    size_t hlen;
    if (magic[6] == 1) {
        unsigned char b[2];
        in.read(reinterpret_cast<char*>(b), 2);
        hlen = b[0] | (b[1] << 8);
    } else {
        unsigned char b[4];
        in.read(reinterpret_cast<char*>(b), 4);
        hlen = b[0] | (b[1] << 8) | (b[2] << 16) | ((size_t)b[3] << 24);
    }
    std::string header(hlen, ' ');
    in.read(&header[0], hlen);
    std::string descr = npy_field(header, "descr");
    if (npy_field(header, "fortran_order").find("False") == std::string::npos)
        throw std::runtime_error(path + ": Fortran order is not supported");
    std::string shape_text = npy_field(header, "shape");
    npy_array arr;
    size_t count = 1;
    std::string digits;
    for (size_t i = 0; i <= shape_text.size(); i++) {
        char c = i < shape_text.size() ? shape_text[i] : ',';
        if (c >= '0' && c <= '9') {
            digits += c;
        } else if (!digits.empty()) {
            arr.shape.push_back(std::stoull(digits));
            count *= arr.shape.back();
            digits.clear();
        }
    }
    size_t item;
    if (descr == "|u1" || descr == "<u1") item = 1;
    else if (descr == "<i4" || descr == "<u4") item = 4;
    else throw std::runtime_error(path + ": dtype " + descr + " is not supported (uint8, int32, uint32)");
    std::vector<unsigned char> raw(count * item);
    in.read(reinterpret_cast<char*>(raw.data()), raw.size());
    if ((size_t)in.gcount() != raw.size()) throw std::runtime_error(path + " is truncated");
    arr.data.resize(count);
    for (size_t i = 0; i < count; i++) {
        const unsigned char* p = &raw[i * item];
        if (item == 1) {
            arr.data[i] = p[0];
        } else {
            uint32_t u = p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24);
            arr.data[i] = descr == "<i4" ? (long long)(int32_t)u : (long long)u;
        }
    }
    return arr;
}

}  // namespace tb
}  // namespace sentei

#endif
