#include "ai/builtin/cities.h"

#include <absl/container/inlined_vector.h>

#include <algorithm>
#include <bitset>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ai/builtin/geonames.h"
#include "ai/builtin/text.h"

namespace persona::ai::builtin {
namespace {

// Cities that are also common English words ("Nice", "Reading", "Mobile",
// "Bath", "Split") are deliberately left out: a bare "reading" must not become
// a city.
constexpr City kCities[] = {
    // South Korea: every city (시), with its Korean name.
    {"Seoul", "서울"},
    {"Busan", "부산"},
    {"Incheon", "인천"},
    {"Daegu", "대구"},
    {"Daejeon", "대전"},
    {"Gwangju", "광주"},
    {"Ulsan", "울산"},
    {"Sejong", "세종"},
    {"Suwon", "수원"},
    {"Seongnam", "성남"},
    {"Goyang", "고양"},
    {"Yongin", "용인"},
    {"Bucheon", "부천"},
    {"Ansan", "안산"},
    {"Anyang", "안양"},
    {"Namyangju", "남양주"},
    {"Hwaseong", "화성"},
    {"Pyeongtaek", "평택"},
    {"Uijeongbu", "의정부"},
    {"Siheung", "시흥"},
    {"Paju", "파주"},
    {"Gimpo", "김포"},
    {"Gwangmyeong", "광명"},
    {"Gunpo", "군포"},
    {"Hanam", "하남"},
    {"Osan", "오산"},
    {"Icheon", "이천"},
    {"Anseong", "안성"},
    {"Guri", "구리"},
    {"Uiwang", "의왕"},
    {"Pocheon", "포천"},
    {"Yangju", "양주"},
    {"Dongducheon", "동두천"},
    {"Gwacheon", "과천"},
    {"Yeoju", "여주"},
    {"Chuncheon", "춘천"},
    {"Wonju", "원주"},
    {"Gangneung", "강릉"},
    {"Donghae", "동해"},
    {"Taebaek", "태백"},
    {"Sokcho", "속초"},
    {"Samcheok", "삼척"},
    {"Cheongju", "청주"},
    {"Chungju", "충주"},
    {"Jecheon", "제천"},
    {"Cheonan", "천안"},
    {"Gongju", "공주"},
    {"Boryeong", "보령"},
    {"Asan", "아산"},
    {"Seosan", "서산"},
    {"Nonsan", "논산"},
    {"Gyeryong", "계룡"},
    {"Dangjin", "당진"},
    {"Jeonju", "전주"},
    {"Gunsan", "군산"},
    {"Iksan", "익산"},
    {"Jeongeup", "정읍"},
    {"Namwon", "남원"},
    {"Gimje", "김제"},
    {"Mokpo", "목포"},
    {"Yeosu", "여수"},
    {"Suncheon", "순천"},
    {"Naju", "나주"},
    {"Gwangyang", "광양"},
    {"Pohang", "포항"},
    {"Gyeongju", "경주"},
    {"Gimcheon", "김천"},
    {"Andong", "안동"},
    {"Gumi", "구미"},
    {"Yeongju", "영주"},
    {"Yeongcheon", "영천"},
    {"Sangju", "상주"},
    {"Mungyeong", "문경"},
    {"Gyeongsan", "경산"},
    {"Changwon", "창원"},
    {"Masan", "마산"},
    {"Jinju", "진주"},
    {"Tongyeong", "통영"},
    {"Sacheon", "사천"},
    {"Gimhae", "김해"},
    {"Miryang", "밀양"},
    {"Geoje", "거제"},
    {"Yangsan", "양산"},
    {"Jeju", "제주"},
    {"Seogwipo", "서귀포"},
    {"Pyongyang", "평양"},
    // East Asia.
    {"Tokyo", "도쿄"},
    {"Osaka", "오사카"},
    {"Kyoto", "교토"},
    {"Yokohama", "요코하마"},
    {"Nagoya", "나고야"},
    {"Sapporo", "삿포로"},
    {"Fukuoka", "후쿠오카"},
    {"Kobe", "고베"},
    {"Hiroshima", "히로시마"},
    {"Sendai", "센다이"},
    {"Nara", ""},
    {"Okinawa", "오키나와"},
    {"Beijing", "베이징"},
    {"Shanghai", "상하이"},
    {"Guangzhou", "광저우"},
    {"Shenzhen", "선전"},
    {"Chengdu", "청두"},
    {"Chongqing", "충칭"},
    {"Tianjin", "톈진"},
    {"Wuhan", "우한"},
    {"Hangzhou", "항저우"},
    {"Nanjing", "난징"},
    {"Xi'an", "시안"},
    {"Suzhou", "쑤저우"},
    {"Qingdao", "칭다오"},
    {"Dalian", "다롄"},
    {"Shenyang", "선양"},
    {"Harbin", "하얼빈"},
    {"Xiamen", "샤먼"},
    {"Kunming", "쿤밍"},
    {"Changsha", "창사"},
    {"Zhengzhou", "정저우"},
    {"Hong Kong", "홍콩"},
    {"Macau", "마카오"},
    {"Taipei", "타이베이"},
    {"Kaohsiung", "가오슝"},
    {"Taichung", "타이중"},
    {"Ulaanbaatar", "울란바토르"},
    // South-east and South Asia.
    {"Singapore", "싱가포르"},
    {"Bangkok", "방콕"},
    {"Chiang Mai", "치앙마이"},
    {"Phuket", "푸껫"},
    {"Hanoi", "하노이"},
    {"Ho Chi Minh City", "호치민"},
    {"Da Nang", "다낭"},
    {"Manila", "마닐라"},
    {"Cebu", "세부"},
    {"Jakarta", "자카르타"},
    {"Bali", "발리"},
    {"Surabaya", "수라바야"},
    {"Kuala Lumpur", "쿠알라룸푸르"},
    {"Penang", "페낭"},
    {"Phnom Penh", "프놈펜"},
    {"Vientiane", "비엔티안"},
    {"Yangon", "양곤"},
    {"Mumbai", "뭄바이"},
    {"Delhi", "델리"},
    {"New Delhi", "뉴델리"},
    {"Bangalore", "방갈로르"},
    {"Bengaluru", ""},
    {"Chennai", "첸나이"},
    {"Kolkata", "콜카타"},
    {"Hyderabad", "하이데라바드"},
    {"Pune", "푸네"},
    {"Ahmedabad", "아메다바드"},
    {"Jaipur", "자이푸르"},
    {"Karachi", "카라치"},
    {"Lahore", "라호르"},
    {"Islamabad", "이슬라마바드"},
    {"Dhaka", "다카"},
    {"Kathmandu", "카트만두"},
    {"Colombo", "콜롬보"},
    {"Kabul", "카불"},
    // Middle East and Central Asia.
    {"Dubai", "두바이"},
    {"Abu Dhabi", "아부다비"},
    {"Doha", "도하"},
    {"Riyadh", "리야드"},
    {"Jeddah", "제다"},
    {"Kuwait City", "쿠웨이트시티"},
    {"Muscat", "무스카트"},
    {"Manama", "마나마"},
    {"Tehran", "테헤란"},
    {"Baghdad", "바그다드"},
    {"Istanbul", "이스탄불"},
    {"Ankara", "앙카라"},
    {"Izmir", "이즈미르"},
    {"Tel Aviv", "텔아비브"},
    {"Jerusalem", "예루살렘"},
    {"Amman", "암만"},
    {"Beirut", "베이루트"},
    {"Damascus", "다마스쿠스"},
    {"Tashkent", "타슈켄트"},
    {"Almaty", "알마티"},
    {"Astana", "아스타나"},
    {"Baku", "바쿠"},
    {"Tbilisi", "트빌리시"},
    {"Yerevan", "예레반"},
    // Europe.
    {"London", "런던"},
    {"Manchester", "맨체스터"},
    {"Birmingham", "버밍엄"},
    {"Liverpool", "리버풀"},
    {"Leeds", "리즈"},
    {"Glasgow", "글래스고"},
    {"Edinburgh", "에든버러"},
    {"Bristol", "브리스톨"},
    {"Cambridge", "케임브리지"},
    {"Oxford", "옥스퍼드"},
    {"Cardiff", "카디프"},
    {"Belfast", "벨파스트"},
    {"Dublin", "더블린"},
    {"Cork", ""},
    {"Paris", "파리"},
    {"Lyon", "리옹"},
    {"Marseille", "마르세유"},
    {"Toulouse", "툴루즈"},
    {"Bordeaux", "보르도"},
    {"Lille", "릴"},
    {"Strasbourg", "스트라스부르"},
    {"Nantes", "낭트"},
    {"Berlin", "베를린"},
    {"Munich", "뮌헨"},
    {"Hamburg", "함부르크"},
    {"Frankfurt", "프랑크푸르트"},
    {"Cologne", "쾰른"},
    {"Stuttgart", "슈투트가르트"},
    {"Düsseldorf", "뒤셀도르프"},
    {"Dresden", "드레스덴"},
    {"Leipzig", "라이프치히"},
    {"Amsterdam", "암스테르담"},
    {"Rotterdam", "로테르담"},
    {"The Hague", "헤이그"},
    {"Utrecht", "위트레흐트"},
    {"Brussels", "브뤼셀"},
    {"Antwerp", "안트베르펜"},
    {"Luxembourg", "룩셈부르크"},
    {"Zurich", "취리히"},
    {"Geneva", "제네바"},
    {"Basel", "바젤"},
    {"Bern", "베른"},
    {"Vienna", "빈"},
    {"Salzburg", "잘츠부르크"},
    {"Prague", "프라하"},
    {"Budapest", "부다페스트"},
    {"Warsaw", "바르샤바"},
    {"Krakow", "크라쿠프"},
    {"Wroclaw", ""},
    {"Gdansk", "그단스크"},
    {"Bratislava", "브라티슬라바"},
    {"Ljubljana", "류블랴나"},
    {"Zagreb", "자그레브"},
    {"Belgrade", "베오그라드"},
    {"Sarajevo", "사라예보"},
    {"Sofia", "소피아"},
    {"Bucharest", "부쿠레슈티"},
    {"Athens", "아테네"},
    {"Thessaloniki", "테살로니키"},
    {"Rome", "로마"},
    {"Milan", "밀라노"},
    {"Naples", "나폴리"},
    {"Turin", "토리노"},
    {"Florence", "피렌체"},
    {"Venice", "베네치아"},
    {"Bologna", "볼로냐"},
    {"Genoa", "제노바"},
    {"Palermo", "팔레르모"},
    {"Madrid", "마드리드"},
    {"Barcelona", "바르셀로나"},
    {"Valencia", "발렌시아"},
    {"Seville", "세비야"},
    {"Malaga", "말라가"},
    {"Bilbao", "빌바오"},
    {"Lisbon", "리스본"},
    {"Porto", "포르투"},
    {"Copenhagen", "코펜하겐"},
    {"Aarhus", ""},
    {"Stockholm", "스톡홀름"},
    {"Gothenburg", "예테보리"},
    {"Oslo", "오슬로"},
    {"Bergen", "베르겐"},
    {"Helsinki", "헬싱키"},
    {"Reykjavik", "레이캬비크"},
    {"Tallinn", "탈린"},
    {"Riga", "리가"},
    {"Vilnius", "빌뉴스"},
    {"Minsk", "민스크"},
    {"Kyiv", "키이우"},
    {"Kharkiv", "하르키우"},
    {"Odesa", "오데사"},
    {"Lviv", "리비우"},
    {"Moscow", "모스크바"},
    {"Saint Petersburg", "상트페테르부르크"},
    {"Novosibirsk", "노보시비르스크"},
    {"Vladivostok", "블라디보스토크"},
    {"Kazan", "카잔"},
    {"Chisinau", ""},
    {"Valletta", "발레타"},
    {"Monaco", "모나코"},
    // Africa.
    {"Cairo", "카이로"},
    {"Alexandria", "알렉산드리아"},
    {"Casablanca", "카사블랑카"},
    {"Marrakesh", "마라케시"},
    {"Rabat", "라바트"},
    {"Tunis", "튀니스"},
    {"Algiers", "알제"},
    {"Lagos", "라고스"},
    {"Abuja", "아부자"},
    {"Accra", "아크라"},
    {"Dakar", "다카르"},
    {"Nairobi", "나이로비"},
    {"Mombasa", "몸바사"},
    {"Addis Ababa", "아디스아바바"},
    {"Kampala", "캄팔라"},
    {"Kigali", "키갈리"},
    {"Dar es Salaam", "다르에스살람"},
    {"Johannesburg", "요하네스버그"},
    {"Cape Town", "케이프타운"},
    {"Durban", "더반"},
    {"Pretoria", "프리토리아"},
    {"Luanda", "루안다"},
    {"Kinshasa", "킨샤사"},
    {"Khartoum", "하르툼"},
    {"Harare", "하라레"},
    {"Lusaka", "루사카"},
    {"Abidjan", "아비장"},
    {"Maputo", "마푸투"},
    {"Antananarivo", "안타나나리보"},
    // North America.
    {"New York", "뉴욕"},
    {"Los Angeles", "로스앤젤레스"},
    {"Chicago", "시카고"},
    {"Houston", "휴스턴"},
    {"Phoenix", "피닉스"},
    {"Philadelphia", "필라델피아"},
    {"San Antonio", "샌안토니오"},
    {"San Diego", "샌디에이고"},
    {"Dallas", "댈러스"},
    {"San Jose", "산호세"},
    {"Austin", "오스틴"},
    {"Jacksonville", "잭슨빌"},
    {"Fort Worth", "포트워스"},
    {"Columbus", "콜럼버스"},
    {"Charlotte", "샬럿"},
    {"San Francisco", "샌프란시스코"},
    {"Indianapolis", "인디애나폴리스"},
    {"Seattle", "시애틀"},
    {"Denver", "덴버"},
    {"Washington", "워싱턴"},
    {"Boston", "보스턴"},
    {"El Paso", "엘패소"},
    {"Nashville", "내슈빌"},
    {"Detroit", "디트로이트"},
    {"Oklahoma City", "오클라호마시티"},
    {"Portland", "포틀랜드"},
    {"Las Vegas", "라스베이거스"},
    {"Memphis", "멤피스"},
    {"Louisville", "루이빌"},
    {"Baltimore", "볼티모어"},
    {"Milwaukee", "밀워키"},
    {"Albuquerque", "앨버커키"},
    {"Tucson", "투손"},
    {"Fresno", "프레즈노"},
    {"Sacramento", "새크라멘토"},
    {"Kansas City", "캔자스시티"},
    {"Atlanta", "애틀랜타"},
    {"Miami", "마이애미"},
    {"Raleigh", "롤리"},
    {"Omaha", "오마하"},
    {"Minneapolis", "미니애폴리스"},
    {"Tulsa", "털사"},
    {"Cleveland", "클리블랜드"},
    {"New Orleans", "뉴올리언스"},
    {"Tampa", "탬파"},
    {"Orlando", "올랜도"},
    {"Pittsburgh", "피츠버그"},
    {"Cincinnati", "신시내티"},
    {"St. Louis", "세인트루이스"},
    {"Salt Lake City", "솔트레이크시티"},
    {"Honolulu", "호놀룰루"},
    {"Anchorage", "앵커리지"},
    {"Oakland", "오클랜드"},
    {"Palo Alto", "팰로앨토"},
    {"Berkeley", "버클리"},
    {"Irvine", "어바인"},
    {"Boise", "보이시"},
    {"Buffalo", "버펄로"},
    {"Richmond", "리치먼드"},
    {"Toronto", "토론토"},
    {"Montreal", "몬트리올"},
    {"Vancouver", "밴쿠버"},
    {"Calgary", "캘거리"},
    {"Edmonton", "에드먼턴"},
    {"Ottawa", "오타와"},
    {"Winnipeg", "위니펙"},
    {"Quebec City", "퀘벡시티"},
    {"Halifax", "핼리팩스"},
    {"Victoria", "빅토리아"},
    {"Mexico City", "멕시코시티"},
    {"Guadalajara", "과달라하라"},
    {"Monterrey", "몬테레이"},
    {"Cancun", "칸쿤"},
    {"Tijuana", "티후아나"},
    {"Puebla", "푸에블라"},
    {"Havana", "아바나"},
    {"Kingston", "킹스턴"},
    {"Santo Domingo", "산토도밍고"},
    {"San Juan", "산후안"},
    {"Panama City", "파나마시티"},
    {"San Salvador", "산살바도르"},
    {"Guatemala City", "과테말라시티"},
    {"Tegucigalpa", "테구시갈파"},
    {"Managua", "마나과"},
    // South America.
    {"São Paulo", "상파울루"},
    {"Rio de Janeiro", "리우데자네이루"},
    {"Brasília", "브라질리아"},
    {"Salvador", "사우바도르"},
    {"Fortaleza", "포르탈레자"},
    {"Belo Horizonte", "벨루오리존치"},
    {"Curitiba", "쿠리치바"},
    {"Recife", "헤시피"},
    {"Porto Alegre", "포르투알레그리"},
    {"Manaus", "마나우스"},
    {"Buenos Aires", "부에노스아이레스"},
    {"Córdoba", "코르도바"},
    {"Rosario", "로사리오"},
    {"Mendoza", "멘도사"},
    {"Santiago", "산티아고"},
    {"Valparaíso", "발파라이소"},
    {"Lima", "리마"},
    {"Cusco", "쿠스코"},
    {"Bogotá", "보고타"},
    {"Medellín", "메데인"},
    {"Cali", "칼리"},
    {"Cartagena", "카르타헤나"},
    {"Caracas", "카라카스"},
    {"Quito", "키토"},
    {"Guayaquil", "과야킬"},
    {"La Paz", "라파스"},
    {"Santa Cruz", "산타크루스"},
    {"Asunción", "아순시온"},
    {"Montevideo", "몬테비데오"},
    // Oceania.
    {"Sydney", "시드니"},
    {"Melbourne", "멜버른"},
    {"Brisbane", "브리즈번"},
    {"Perth", "퍼스"},
    {"Adelaide", "애들레이드"},
    {"Canberra", "캔버라"},
    {"Gold Coast", "골드코스트"},
    {"Hobart", "호바트"},
    {"Darwin", "다윈"},
    {"Auckland", "오클랜드"},
    {"Wellington", "웰링턴"},
    {"Christchurch", "크라이스트처치"},
    {"Queenstown", "퀸스타운"},
    {"Suva", "수바"},
    {"Port Moresby", "포트모르즈비"},
};

// Alternative spellings → canonical English name.
constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"nyc", "New York"},
    {"new york city", "New York"},
    {"saigon", "Ho Chi Minh City"},
    {"ho chi minh", "Ho Chi Minh City"},
    {"hcmc", "Ho Chi Minh City"},
    {"bombay", "Mumbai"},
    {"calcutta", "Kolkata"},
    {"madras", "Chennai"},
    {"kiev", "Kyiv"},
    {"odessa", "Odesa"},
    {"st petersburg", "Saint Petersburg"},
    {"st. petersburg", "Saint Petersburg"},
    {"sao paulo", "São Paulo"},
    {"brasilia", "Brasília"},
    {"bogota", "Bogotá"},
    {"medellin", "Medellín"},
    {"cordoba", "Córdoba"},
    {"valparaiso", "Valparaíso"},
    {"asuncion", "Asunción"},
    {"dusseldorf", "Düsseldorf"},
    {"duesseldorf", "Düsseldorf"},
    {"zürich", "Zurich"},
    {"münchen", "Munich"},
    {"muenchen", "Munich"},
    {"köln", "Cologne"},
    {"koeln", "Cologne"},
    {"wien", "Vienna"},
    {"praha", "Prague"},
    {"roma", "Rome"},
    {"milano", "Milan"},
    {"napoli", "Naples"},
    {"firenze", "Florence"},
    {"venezia", "Venice"},
    {"lisboa", "Lisbon"},
    {"kraków", "Krakow"},
    {"warszawa", "Warsaw"},
    {"xian", "Xi'an"},
    {"peking", "Beijing"},
    {"washington dc", "Washington"},
    {"washington d.c.", "Washington"},
    {"st louis", "St. Louis"},
    {"saint louis", "St. Louis"},
    {"pusan", "Busan"},
    {"taegu", "Daegu"},
    {"inchon", "Incheon"},
    {"kwangju", "Gwangju"},
    {"taejon", "Daejeon"},
    {"jeju city", "Jeju"},
    {"jeju island", "Jeju"},
    {"cheju", "Jeju"},
    {"bengaluru", "Bangalore"},
    {"marrakech", "Marrakesh"},
    {"호찌민", "Ho Chi Minh City"},
    {"호치민시", "Ho Chi Minh City"},
    {"워싱턴 dc", "Washington"},
    {"엘에이", "Los Angeles"},
    {"la", "Los Angeles"},
};

// Up to the first 4 bytes of `s`, lower-cased, and their count, as one number.
uint64_t Head(std::string_view s) {
  uint64_t h = std::min<size_t>(s.size(), 4);
  for (size_t i = 0; i < s.size() && i < 4; ++i) {
    char ch = s[i];
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    h = h << 8 | static_cast<unsigned char>(ch);
  }
  return h;
}

// Latin letters with diacritics → ASCII, so that "Krakow" finds "Kraków"
// (two-byte UTF-8 sequences of Latin-1 Supplement and Latin Extended-A; the
// letters GeoNames' city names use most).
std::string FoldAscii(std::string_view s) {
  static const std::unordered_map<std::string_view, char> kFold = {
      {"à", 'a'}, {"á", 'a'}, {"â", 'a'}, {"ã", 'a'}, {"ä", 'a'}, {"å", 'a'}, {"ā", 'a'},
      {"ă", 'a'}, {"ą", 'a'}, {"ç", 'c'}, {"ć", 'c'}, {"č", 'c'}, {"ď", 'd'}, {"đ", 'd'},
      {"è", 'e'}, {"é", 'e'}, {"ê", 'e'}, {"ë", 'e'}, {"ē", 'e'}, {"ę", 'e'}, {"ě", 'e'},
      {"ğ", 'g'}, {"ì", 'i'}, {"í", 'i'}, {"î", 'i'}, {"ï", 'i'}, {"ī", 'i'}, {"ı", 'i'},
      {"ł", 'l'}, {"ñ", 'n'}, {"ń", 'n'}, {"ň", 'n'}, {"ò", 'o'}, {"ó", 'o'}, {"ô", 'o'},
      {"õ", 'o'}, {"ö", 'o'}, {"ø", 'o'}, {"ō", 'o'}, {"ő", 'o'}, {"ř", 'r'}, {"ś", 's'},
      {"ş", 's'}, {"š", 's'}, {"ţ", 't'}, {"ť", 't'}, {"ù", 'u'}, {"ú", 'u'}, {"û", 'u'},
      {"ü", 'u'}, {"ū", 'u'}, {"ů", 'u'}, {"ű", 'u'}, {"ý", 'y'}, {"ÿ", 'y'}, {"ź", 'z'},
      {"ż", 'z'}, {"ž", 'z'}};
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (i + 1 < s.size() && (static_cast<unsigned char>(s[i]) & 0xE0) == 0xC0) {
      if (auto it = kFold.find(s.substr(i, 2)); it != kFold.end()) {
        out += it->second;
        ++i;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

size_t HangulSyllables(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i + 3 <= s.size(); i += 3) n += IsHangulAt(s, i);
  return n;
}

struct Index {
  std::unordered_map<std::string, const City*> by_name;  // lower-case English / Korean
  std::deque<City> geo;                                  // GeoNames entries (stable addresses)
  std::deque<std::string> strings;                       // their names
  // Head() of every by_name key. A key matches a lookup (exactly or before a
  // Korean suffix) only if it is a prefix of it, so the lookup's first 1..4
  // bytes include the key's head: most words are rejected without hashing
  // and allocating a lower-case copy (FindCityIn tries every word).
  std::unordered_set<uint64_t> heads;
  // The same for the first two bytes, as a bitmap: cheaper still.
  std::bitset<1 << 16> pairs;
  std::bitset<256> one_byte_keys;
  size_t max_words = 1;

  // False if no key is a prefix of lower-cased `s`.
  bool MayStartWithKey(std::string_view s) const {
    if (s.empty()) return false;
    if (!one_byte_keys[static_cast<unsigned char>(s[0])] &&
        (s.size() < 2 || !pairs[Head(s.substr(0, 2)) & 0xFFFF]))
      return false;
    for (size_t n = 1; n <= s.size() && n <= 4; ++n)
      if (heads.count(Head(s.substr(0, n)))) return true;
    return false;
  }
};

const Index& GetIndex() {
  static const Index* index = [] {
    auto* idx = new Index;
    for (const City& c : kCities) {
      idx->by_name.emplace(Lower(c.en), &c);
      if (!c.ko.empty()) idx->by_name.emplace(std::string(c.ko), &c);
      idx->max_words =
          std::max<size_t>(idx->max_words, 1 + std::count(c.en.begin(), c.en.end(), ' '));
    }
    for (const auto& [alias, en] : kAliases) {
      auto it = idx->by_name.find(Lower(en));
      if (it != idx->by_name.end()) idx->by_name.emplace(std::string(alias), it->second);
    }
    // GeoNames, most populous first: of two cities with one name, the
    // larger is meant ("Portland" is Oregon's, "Córdoba" Argentina's).
    const auto& cities = GeoNamesCities();
    std::vector<const GeoCity*> order;
    order.reserve(cities.size());
    for (const auto& g : cities) order.push_back(&g);
    std::stable_sort(order.begin(), order.end(), [](const GeoCity* a, const GeoCity* b) {
      return a->population > b->population;
    });
    for (const GeoCity* g : order) {
      std::string en = g->en;
      for (std::string_view suffix : {"-si", "-shi", "-gun"})  // "Suwon-si", "Ōsaka-shi"
        if (en.size() > suffix.size() + 2 && std::string_view(en).ends_with(suffix))
          en.resize(en.size() - suffix.size());
      const std::string key = Lower(en);
      if (key.size() <= 3) continue;  // "Bo", "Bar", "Ath": words, not places
      std::string ko = g->ko;
      while (!ko.empty() && ko.back() == ' ') ko.pop_back();
      const std::string& en_ref = idx->strings.emplace_back(std::move(en));
      const std::string& ko_ref = idx->strings.emplace_back(std::move(ko));
      const City& city = idx->geo.emplace_back(City{en_ref, ko_ref, false, g->population});
      if (idx->by_name.count(key)) continue;  // a curated or larger city has it
      idx->by_name.emplace(key, &city);
      idx->by_name.emplace(FoldAscii(key), &city);
      if (HangulSyllables(ko_ref) >= 2 && g->population >= 100000)
        idx->by_name.emplace(ko_ref, &city);
      idx->max_words =
          std::max<size_t>(idx->max_words, 1 + std::count(key.begin(), key.end(), ' '));
    }
    for (const auto& [key, city] : idx->by_name) {
      idx->heads.insert(Head(key));
      if (key.size() == 1) idx->one_byte_keys.set(static_cast<unsigned char>(key[0]));
      if (key.size() >= 2) idx->pairs.set(Head(key.substr(0, 2)) & 0xFFFF);
    }
    return idx;
  }();
  return *index;
}

}  // namespace

const City* FindCityImpl(std::string_view name, bool curated_only);

const City* FindCity(std::string_view name) { return FindCityImpl(name, false); }

const City* FindCuratedCity(std::string_view name) { return FindCityImpl(name, true); }

const City* FindCityImpl(std::string_view name, bool curated_only) {
  const Index& idx = GetIndex();
  // The trimming below, on a view: it strips no letters, so case is moot.
  std::string_view trimmed = name;
  while (!trimmed.empty() &&
         (trimmed.back() == ' ' || trimmed.back() == '.' || trimmed.back() == ','))
    trimmed.remove_suffix(1);
  while (!trimmed.empty() && trimmed.front() == ' ') trimmed.remove_prefix(1);
  if (!idx.MayStartWithKey(trimmed)) return nullptr;
  std::string key = Lower(name);
  while (!key.empty() && (key.back() == ' ' || key.back() == '.' || key.back() == ','))
    key.pop_back();
  while (!key.empty() && key.front() == ' ') key.erase(key.begin());
  auto allowed = [curated_only](const City* c) {
    return !curated_only || c->curated ? c : nullptr;
  };
  if (auto it = idx.by_name.find(key); it != idx.by_name.end()) return allowed(it->second);
  if (!curated_only)
    if (auto it = idx.by_name.find(FoldAscii(key)); it != idx.by_name.end()) return it->second;
  // Korean administrative suffixes: 부산광역시, 서울특별시, 세종특별자치시, 수원시, 제주도.
  static constexpr std::string_view kSuffixes[] = {"특별자치시", "특별자치도", "특별시",
                                                   "광역시",     "시",         "도"};
  for (std::string_view suffix : kSuffixes) {
    if (key.size() > suffix.size() && std::string_view(key).ends_with(suffix)) {
      auto it = idx.by_name.find(key.substr(0, key.size() - suffix.size()));
      if (it != idx.by_name.end()) return allowed(it->second);
    }
  }
  return nullptr;
}

std::optional<CityMatch> MatchCityPrefix(std::string_view text) {
  size_t start = 0;
  while (start < text.size() && text[start] == ' ') ++start;
  // Candidate ends: each word boundary, up to max_words + 1 words (aliases are longer).
  absl::InlinedVector<size_t, 8> ends;
  size_t i = start;
  const size_t max_words = GetIndex().max_words + 1;
  while (i < text.size() && ends.size() < max_words) {
    while (i < text.size() &&
           (IsWordByte(static_cast<unsigned char>(text[i])) || text[i] == '.' || text[i] == '-')) {
      ++i;
    }
    if (i == start) break;
    ends.push_back(i);
    if (i >= text.size() || text[i] != ' ') break;
    ++i;
  }
  // Every candidate below is a prefix of the longest one, and a key must be a
  // prefix of a candidate: one check rejects most starts (FindCityIn tries
  // every word of a message).
  if (ends.empty() || !GetIndex().MayStartWithKey(text.substr(start, ends.back() - start)))
    return std::nullopt;
  for (auto it = ends.rbegin(); it != ends.rend(); ++it) {
    size_t end = *it;
    // A trailing full stop ends the sentence unless it is part of "St." / "D.C.".
    if (const City* c = FindCity(text.substr(start, end - start)))
      return CityMatch{c, start, end - start};
    while (end > start && text[end - 1] == '.') --end;
    if (const City* c = FindCity(text.substr(start, end - start)))
      return CityMatch{c, start, end - start};
  }
  return std::nullopt;
}

std::optional<CityMatch> FindCityIn(std::string_view text) {
  const Index& idx = GetIndex();
  for (size_t i = 0; i < text.size(); ++i) {
    const bool boundary = i == 0 || !IsWordByte(static_cast<unsigned char>(text[i - 1]));
    if (boundary) {
      if (auto m = MatchCityPrefix(text.substr(i)); m && m->pos == 0) {
        // Known only from GeoNames, further into the clause: only as a name.
        if (m->city->curated || i == 0 || (text[i] >= 'A' && text[i] <= 'Z')) {
          m->pos = i;
          return m;
        }
      }
    }
    // Korean: a word starting here whose leading syllables name a city ("서울에서").
    if (boundary && IsHangulAt(text, i)) {
      size_t end = i;
      while (end < text.size() && IsHangulAt(text, end)) end += 3;
      for (size_t len = end - i; len >= 3; len -= 3) {
        auto it = idx.by_name.find(std::string(text.substr(i, len)));
        if (it != idx.by_name.end()) {
          // Only a particle may follow; two or more syllables could be another word.
          return CityMatch{it->second, i, len};
        }
        // Allow the administrative suffixes: "부산광역시에".
        if (const City* c = FindCity(text.substr(i, len))) return CityMatch{c, i, len};
      }
    }
  }
  return std::nullopt;
}

}  // namespace persona::ai::builtin
