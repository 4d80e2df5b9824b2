# SierraDB from redis-rb (Debian ruby-redis, 4.x), default settings (RESP2).
#   ruby examples/clients/ruby/redis_rb.rb [port]
# redis-rb cannot receive pushes outside its pub/sub API, so the consumer uses EPREAD ... BLOCK.
require "redis"
require "securerandom"

port = (ARGV[0] || 9090).to_i
r = Redis.new(port: port)
def as_map(flat) = flat.each_slice(2).to_h
def check(ok, what) = (raise "failed: #{what}" unless ok)

stream = "account-#{SecureRandom.hex(4)}"

# Append with an expected version; a conflict's error code reaches the caller.
opened = as_map(r.call("EAPPEND", stream, "Opened", "PAYLOAD", '{"owner":"ann"}',
                       "EXPECTED_VERSION", "empty"))
r.call("EAPPEND", stream, "Deposited", "PAYLOAD", '{"amount":10}', "EXPECTED_VERSION", 0)
begin
  r.call("EAPPEND", stream, "Deposited", "EXPECTED_VERSION", 0)
  raise "a stale expected version was accepted"
rescue Redis::CommandError => e
  check(e.message.start_with?("WRONGVER"), e.message)
end
partition = opened["partition_id"]

# Several events in one partition, atomically.
multi = as_map(r.call("EMAPPEND", opened["partition_key"], stream, "A", stream, "B"))
check(multi["events"].map { |e| as_map(e)["stream_version"] } == [2, 3], "EMAPPEND")

# Read back by stream, by partition and by event id.
all = as_map(r.call("ESCAN", stream, "-", "+"))["events"].map { |e| as_map(e) }
check(all.map { |e| e["event_name"] } == %w[Opened Deposited A B], "ESCAN")
seq = opened["partition_sequence"]
by_partition = as_map(r.call("EPSCAN", partition, seq, seq))["events"].map { |e| as_map(e) }
check(by_partition[0]["event_id"] == opened["event_id"], "EPSCAN")
check(as_map(r.call("EGET", opened["event_id"]))["event_name"] == "Opened", "EGET")

# Page to the end.
versions, start = [], 0
loop do
  page = as_map(r.call("ESCAN", stream, start, "+", "COUNT", 3))
  got = page["events"].map { |e| as_map(e)["stream_version"] }
  versions.concat(got)
  break if page["has_more"] == 0
  start = got.last + 1
end
check(versions == [0, 1, 2, 3], "paging")

# 50 pipelined appends.
piped = r.pipelined do |pipe|
  50.times { |i| pipe.call("EAPPEND", stream, "Piped", "PAYLOAD", i.to_s) }
end
check(piped.map { |x| as_map(x)["stream_version"] } == (4...54).to_a, "pipeline")

# Binary payload round trip.
blob = (0...1024).map { |i| (i % 256).chr }.join.b
stored = as_map(r.call("EAPPEND", stream, "Blob", "PAYLOAD", blob))
check(as_map(r.call("EGET", stored["event_id"]))["payload"].b == blob, "binary payload")

# A consumer follows the partition from sequence 0 into live events while another
# connection appends; every event once, in order.
LIVE = 30
writer = Thread.new do
  w = Redis.new(port: port)
  LIVE.times { |i| w.call("EAPPEND", stream, "Live", "PAYLOAD", i.to_s) }
end
consumer = Redis.new(port: port, read_timeout: 10) # a blocked read holds its connection
seen, position = [], 0
until !writer.alive? && position > r.call("EPSEQ", partition)
  reply = consumer.call("EPREAD", "COUNT", 100, "BLOCK", 2000, "FROM", partition, position)
  as_map(reply).each_value do |part|
    as_map(part)["events"].each do |e|
      event = as_map(e)
      check(event["partition_sequence"] == position, "in order")
      seen << event
      position += 1
    end
  end
end
writer.join
mine = seen.select { |e| e["stream_id"] == stream }
check(mine.map { |e| e["stream_version"] } == (0...mine.size).to_a, "every version once")
live = mine.select { |e| e["event_name"] == "Live" }.map { |e| e["payload"] }
check(live == (0...LIVE).map(&:to_s), "live events")
puts "OK redis-rb #{Redis::VERSION}"
